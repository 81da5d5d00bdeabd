package hooks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

var twoChildren = []failover.SplitChild{
	{Partition: 8, KeyStart: 0, KeyEnd: 1 << 31, Epoch: 3},
	{Partition: 9, KeyStart: 1 << 31, KeyEnd: 1 << 32, Epoch: 3},
}

func TestASplitIsAcknowledgedOnlyByAnAppThatSaysItSplit(t *testing.T) {
	// An app that answers 204 to everything, as an app that acknowledges
	// the events it does not know does.
	app := newFakeApp(t)
	store := openStore(t, t.TempDir())
	d := startDeliverer(t, testConfig(app.srv.URL), store, &sinkRecorder{})
	d.SetDesired(map[int]Assignment{3: {Partition: 3, Resource: "default", Epoch: 1, Role: RolePrimary}})
	eventually(t, "the assign is acknowledged", synced(d))

	d.SetDesired(map[int]Assignment{3: {Partition: 3, Resource: "default", Epoch: 2, Role: RolePrimary, Split: twoChildren}})
	eventually(t, "the split is delivered a few times", func() bool { return app.attemptsOf("n1-p3-e2-split") >= 3 })
	if epoch, _ := d.AckedEpoch(3); epoch != 1 {
		t.Fatalf("a 204 without %s acknowledged the split (acked epoch %d)", SplitDoneHeader, epoch)
	}
	for _, ev := range app.log() {
		if ev.Type == TypeSplit && (len(ev.Children) != 2 || ev.Children[1].Partition != 9 || ev.Resource != "default" || ev.Role != RolePrimary) {
			t.Fatalf("split event %+v", ev)
		}
	}
}

func TestTheHandlerAcknowledgesASplitOnlyThroughOnSplit(t *testing.T) {
	ev := Event{ID: "n1-p3-e2-split", Type: TypeSplit, NodeID: "n1", Partition: 3, Resource: "default", Epoch: 2, Role: RolePrimary, Children: twoChildren, Timestamp: time.Now().Unix()}
	send := func(h *Handler) *httptest.ResponseRecorder {
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		req := signedRequest(t, testSecret, ev.ID, time.Now(), body)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := send(&Handler{Secret: testSecret}); rec.Code != http.StatusNotImplemented || rec.Header().Get(SplitDoneHeader) != "" {
		t.Fatalf("without OnSplit: %d %q, want 501 and no %s", rec.Code, rec.Header().Get(SplitDoneHeader), SplitDoneHeader)
	}
	var got Event
	h := &Handler{Secret: testSecret, OnSplit: func(_ context.Context, e Event) Response { got = e; return Ack() }}
	if rec := send(h); rec.Code != http.StatusNoContent || rec.Header().Get(SplitDoneHeader) != "done" {
		t.Fatalf("with OnSplit: %d %q", rec.Code, rec.Header().Get(SplitDoneHeader))
	}
	if len(got.Children) != 2 || got.Children[0].KeyEnd != 1<<31 {
		t.Fatalf("OnSplit got %+v", got)
	}
	h.OnSplit = func(context.Context, Event) Response { return Retry(errSplitNotYet) }
	if rec := send(h); rec.Code != http.StatusServiceUnavailable || rec.Header().Get(SplitDoneHeader) != "" {
		t.Fatalf("a split the app could not do yet: %d %q", rec.Code, rec.Header().Get(SplitDoneHeader))
	}
	bad := ev
	bad.Children = bad.Children[:1]
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "two adjacent children") {
		t.Fatalf("a split with one child: %v", err)
	}
}

var errSplitNotYet = errString("disk busy")

type errString string

func (e errString) Error() string { return string(e) }
