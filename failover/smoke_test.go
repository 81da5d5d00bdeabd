package failover

import "testing"

func TestSmoke(t *testing.T) {
	c := bootstrap(t, 64, 3, nodes(5))
	if a := Plan(PlanInput{Cluster: c, Seed: 1}); len(a) != 0 {
		t.Fatalf("initial plans %v", a)
	}
	fail(t, c, 10, "n01")
	r := converge(t, c, 20)
	t.Log("rounds", r)
	cp, pr := counts(c)
	t.Log(cp, pr)
	join(t, c, 30, node{id: "n06"})
	converge(t, c, 40)
	cp, pr = counts(c)
	t.Log(cp, pr)
}
