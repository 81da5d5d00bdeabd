package failover

// ConvergeMaxRounds bounds Converge: a planner that has not converged after
// this many rounds is oscillating, which is a bug.
const ConvergeMaxRounds = 10000

// Converge repeatedly plans for c and applies the plan, acknowledging every
// migration at once (as if every app copied instantly), until the plan is
// empty. It returns the number of plans applied, or -1 if the plan was still
// not empty after ConvergeMaxRounds. in.Cluster is ignored (c is used);
// at is the time of every command. It is meant for tests, benchmarks and
// simulations; the agent applies plans through raft instead.
func Converge(c *Cluster, in PlanInput, at int64) (rounds int) {
	for rounds = 0; rounds < ConvergeMaxRounds; rounds++ {
		in.Cluster = c
		actions := Plan(in)
		if len(actions) == 0 {
			return rounds
		}
		if _, err := c.Apply(Command{Kind: CmdApplyActions, At: at, Actions: actions}); err != nil {
			return -1
		}
		if acks := AcknowledgeAll(c); len(acks) > 0 {
			if _, err := c.Apply(Command{Kind: CmdApplyActions, At: at, Actions: acks}); err != nil {
				return -1
			}
		}
	}
	return -1
}

// AcknowledgeAll returns ActionCompleteMigration for every migration in
// flight whose target can hold data, with epochs chained so that several
// completions of one partition apply in one command.
func AcknowledgeAll(c *Cluster) []Action {
	var out []Action
	for _, p := range c.Partitions {
		e := p.Epoch
		for _, m := range p.Migrations {
			if t, ok := c.Members[m.Target]; !ok || !t.CanHold() {
				continue
			}
			out = append(out, Action{Kind: ActionCompleteMigration, Partition: p.ID, Epoch: e, Node: m.Target, MigrationID: m.ID, Priority: PriorityFinish, Reasons: []string{"acknowledged"}})
			e++
		}
	}
	return out
}
