package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// fakeApp records the webhooks it gets; copies answer 202 and are
// acknowledged to the agent from a goroutine, as a real app does.
type fakeApp struct {
	t      *testing.T
	mu     sync.Mutex
	events []hooks.Event
	agent  string // base URL of its agent, set once known
	wg     sync.WaitGroup
}

func (f *fakeApp) record(ctx context.Context, ev hooks.Event) hooks.Response {
	f.mu.Lock()
	f.events = append(f.events, ev)
	agent := f.agent
	f.mu.Unlock()
	if ev.Type == hooks.TypeAssign && ev.Source != nil && ev.MigrationID != "" {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := hooks.AckMigration(ctx, http.DefaultClient, agent, ev.MigrationID, ""); err != nil {
				f.t.Logf("ack %s: %v", ev.MigrationID, err)
			}
		}()
		return hooks.Copying()
	}
	return hooks.Ack()
}

func (f *fakeApp) count(match func(hooks.Event) bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, ev := range f.events {
		if match(ev) {
			n++
		}
	}
	return n
}

func newFakeApp(t *testing.T, secret []byte) (*fakeApp, *httptest.Server) {
	f := &fakeApp{t: t}
	h := &hooks.Handler{Secret: secret, Tolerance: time.Minute,
		OnAssign: f.record, OnPromote: f.record, OnDemote: f.record, OnRelease: f.record, OnRejoin: f.record, OnQuorum: f.record}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); f.wg.Wait() })
	return f, srv
}

func TestAppsAreToldTheirPartitionsAndCopiesCompleteOnAcknowledgement(t *testing.T) {
	secretText, err := hooks.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := hooks.ParseSecret(secretText)
	dir := t.TempDir()

	app1, srv1 := newFakeApp(t, secret)
	c1 := testConfig(t, "w1", filepath.Join(dir, "w1"))
	c1.BootstrapExpect = 1
	c1.Partitions = 8
	c1.ReplicationFactor = 2
	c1.WebhookURL = srv1.URL + "/steward/events"
	c1.WebhookSecret = secretText
	c1.AppAddr = "127.0.0.1:2"
	a1 := startAgent(t, c1)
	app1.mu.Lock()
	app1.agent = "http://" + a1.HTTPAddr()
	app1.mu.Unlock()

	waitFor(t, 20*time.Second, "app1 told it leads all 8 partitions", func() error {
		if n := app1.count(func(ev hooks.Event) bool { return ev.Type == hooks.TypeAssign && ev.Role == hooks.RolePrimary }); n < 8 {
			return fmt.Errorf("%d primary assigns", n)
		}
		return nil
	})

	app2, srv2 := newFakeApp(t, secret)
	c2 := testConfig(t, "w2", filepath.Join(dir, "w2"))
	c2.Partitions = 8
	c2.Join = []string{a1.GossipAddr()}
	c2.WebhookURL = srv2.URL + "/steward/events"
	c2.WebhookSecret = secretText
	c2.AppAddr = "127.0.0.1:1"
	// The app's agent address must be known before the first copy.
	app2.mu.Lock()
	a2 := startAgent(t, c2)
	app2.agent = "http://" + a2.HTTPAddr()
	app2.mu.Unlock()

	waitFor(t, 30*time.Second, "every partition has two copies after app2's acknowledged copies", func() error {
		st := a1.raft.Snapshot()
		for _, p := range st.Partitions {
			if len(p.Holders()) != 2 || len(p.Migrations) != 0 {
				return fmt.Errorf("partition %d: holders %v, migrations %d", p.ID, p.Holders(), len(p.Migrations))
			}
		}
		return nil
	})
	if n := app2.count(func(ev hooks.Event) bool {
		return ev.Type == hooks.TypeAssign && ev.Source != nil && ev.Source.NodeID == "w1" && ev.MigrationID != ""
	}); n < 4 {
		t.Fatalf("app2 got %d copy assigns from w1, want at least 4", n)
	}
	waitFor(t, 10*time.Second, "nothing left undelivered", func() error {
		if p := a2.deliverer.Pending() + a1.deliverer.Pending(); p != 0 {
			return fmt.Errorf("%d pending", p)
		}
		return nil
	})
}
