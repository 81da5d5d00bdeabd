package hooks

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParseEvent feeds arbitrary signed bodies to the receiver: it must
// never panic, and whatever it accepts must be a valid event.
func FuzzParseEvent(f *testing.F) {
	for _, seed := range []string{
		`{"id":"x","type":"partition.assign","node_id":"n1","partition":3,"epoch":7,"role":"replica","source":{"node_id":"n2","app_addr":"127.0.0.1:1"},"migration_id":"m1"}`,
		`{"id":"x","type":"partition.promote","node_id":"n1","partition":0,"epoch":1,"role":"primary"}`,
		`{"id":"x","type":"partition.release","node_id":"n1","partition":9,"epoch":2,"role":"none"}`,
		`{"id":"x","type":"node.rejoin","node_id":"n1","partitions":[1,2,3]}`,
		`{"id":"x","type":"cluster.quorum","node_id":"n1","quorum":"lost"}`,
		`{"id":"x","partition":-1}`,
		`{"id":"x"} trailing`,
		`null`,
		``,
	} {
		f.Add(seed)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		SignHeaders(r.Header, testSecret, "x", now, []byte(body))
		ev, err := ParseEvent(r, testSecret, time.Hour)
		if err == nil {
			if verr := ev.Validate(); verr != nil {
				t.Fatalf("accepted an invalid event %+v: %v", ev, verr)
			}
			if ev.ID != "x" {
				t.Fatalf("accepted id %q under webhook-id x", ev.ID)
			}
			return
		}
		if !errors.Is(err, ErrInvalidEvent) && !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrBodyTooLarge) {
			t.Fatalf("a signed body failed with %v", err)
		}
	})
}

// FuzzReplayAckLog feeds arbitrary bytes to the acknowledgement log reader
// (what a damaged disk could hand it): it must never panic, and whatever
// it accepts must be a valid state that reads back the same once written.
func FuzzReplayAckLog(f *testing.F) {
	f.Add([]byte(ackLogMagic))
	f.Add(logOf(set(1, RolePrimary, 3), AckChange{Partition: 1, Delete: true}, AckChange{Partition: 7, Acked: Acked{Role: RoleReplica, Epoch: 9, MigrationID: "m1", Copying: true}}))
	f.Add(logOf(set(70000, RoleReplica, 1<<40))[:30])
	f.Add([]byte(`{"version":1,"partitions":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got := map[int]Acked{}
		if _, _, err := replayAckLog(data, got); err != nil {
			return
		}
		var changes []AckChange
		for p, a := range got {
			c := AckChange{Partition: p, Acked: a}
			if err := validateChange(c); err != nil {
				t.Fatalf("accepted an entry the store would refuse to write: %v", err)
			}
			changes = append(changes, c)
		}
		again := map[int]Acked{}
		if n, torn, err := replayAckLog(logOf(changes...), again); err != nil || torn || n != len(changes) {
			t.Fatalf("rewritten state reads back with %d records, torn %v, %v", n, torn, err)
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("rewritten state reads back as %+v, was %+v", again, got)
		}
	})
}
