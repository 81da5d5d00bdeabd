package raftctl

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/steward-dev/steward/failover"
)

func TestCommandRoundTrip(t *testing.T) {
	cmds := []failover.Command{
		bootstrapCommand("a", "b", "c"),
		upsertCommand("d", 7),
		{Kind: failover.CmdSetStatus, At: 9, Node: "a", Status: failover.StatusFailed, Actions: []failover.Action{
			{Kind: failover.ActionPromote, Partition: 3, Epoch: 2, Node: "b", Reasons: []string{"primary failed"}},
		}},
		{Kind: failover.CmdCopiesLost, At: 11, Node: "c", Actions: []failover.Action{
			{Kind: failover.ActionDropLostCopy, Partition: 1, Epoch: 4, Node: "c", Reasons: []string{"the app of c reported that it does not have the partition"}},
		}},
		{Kind: failover.CmdSetPin, At: 12, Pin: &failover.PinChange{Partition: 2, Node: "b", Primary: true}},
		{Kind: failover.CmdReplaceMember, At: 13, Node: "a", Replacement: "d"},
		{Kind: failover.CmdApplyActions, At: 14, Actions: []failover.Action{
			{Kind: failover.ActionCancelMigration, Partition: 5, Epoch: 3, Node: "d", MigrationID: "m7", CopyFailed: true, Reasons: []string{"the app of d failed the copy: disk full"}},
		}},
		{Kind: failover.CmdCreateResource, At: 15, Resource: &failover.Resource{Name: "orders", Partitions: 1, ReplicationFactor: 2, TargetSize: 1 << 20},
			Table: []failover.Partition{{ID: 8, Epoch: 1, Primary: "a", Replicas: []string{"b"}, Resource: "orders", KeyEnd: failover.KeySpace}}},
		{Kind: failover.CmdSetReplicationFactor, At: 16, Resource: &failover.Resource{Name: "orders", ReplicationFactor: 3}},
		{Kind: failover.CmdSetTargetSize, At: 17, Resource: &failover.Resource{Name: "default", TargetSize: 4096}},
		{Kind: failover.CmdDeleteResource, At: 18, Resource: &failover.Resource{Name: "orders"}},
		{Kind: failover.CmdSplitPartition, At: 19, Split: &failover.SplitRequest{Partition: 2, Epoch: 5}},
		{Kind: failover.CmdFinishSplit, At: 20, Node: "a", Split: &failover.SplitRequest{Partition: 2, Epoch: 6}},
		{Kind: failover.CmdSetPlacement, At: 21, Resource: &failover.Resource{Name: "orders", Zones: failover.ZonesStrict, Nodes: "disk=ssd,rack=r1"}},
		{Kind: failover.CmdSetTags, At: 22, Node: "b", Tags: map[string]string{"disk": "ssd"}},
	}
	for _, cmd := range cmds {
		data, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("encode %s: %v", cmd.Kind, err)
		}
		if data[0] != encodingJSON {
			t.Fatalf("encode %s: version byte %d, want %d", cmd.Kind, data[0], encodingJSON)
		}
		got, err := DecodeCommand(data)
		if err != nil {
			t.Fatalf("decode %s: %v", cmd.Kind, err)
		}
		if !reflect.DeepEqual(got, cmd) {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", cmd.Kind, got, cmd)
		}
	}
}

func TestDecodeCommandRejectsBadInput(t *testing.T) {
	valid, _ := EncodeCommand(upsertCommand("a", 1))
	cases := []struct {
		name string
		data []byte
		want error // nil: any error
	}{
		{"empty", nil, ErrEmptyCommand},
		{"unknown version", append([]byte{2}, valid[1:]...), ErrUnknownEncoding},
		{"version zero", append([]byte{0}, valid[1:]...), ErrUnknownEncoding},
		{"truncated", valid[:len(valid)/2], nil},
		{"version byte only", []byte{encodingJSON}, nil},
		{"garbage", []byte{encodingJSON, 0xff, 0x00, '{'}, nil},
		{"json null", append([]byte{encodingJSON}, "null"...), nil},
		{"no kind", append([]byte{encodingJSON}, `{"at":1}`...), nil},
		{"wrong type", append([]byte{encodingJSON}, `{"kind":"upsert_member","at":"soon"}`...), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeCommand(tc.data)
			if err == nil {
				t.Fatalf("DecodeCommand(%q) succeeded, want an error", tc.data)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("DecodeCommand(%q) = %v, want %v", tc.data, err, tc.want)
			}
		})
	}
}

// FuzzDecodeCommand: any input decodes or fails, never panics, and what
// decodes re-encodes to bytes that are a fixed point of decode+encode (the
// command survives a round trip; empty and absent lists are the same).
func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range []failover.Command{bootstrapCommand("a", "b"), upsertCommand("x", 3), {Kind: failover.CmdRemoveMember, Node: "x"}} {
		data, err := EncodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)-3])
	}
	f.Add([]byte{})
	f.Add([]byte{encodingJSON})
	f.Add([]byte{7, '{', '}'})
	f.Add(append([]byte{encodingJSON}, `{"kind":"apply_actions","actions":[{"kind":"promote","partition":-1}]}`...))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := DecodeCommand(data)
		if err != nil {
			return
		}
		again, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := DecodeCommand(again)
		if err != nil {
			t.Fatalf("decode of re-encoded command: %v", err)
		}
		third, err := EncodeCommand(back)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(third, again) {
			t.Fatalf("round trip changed the command:\n got %s\nwant %s", third, again)
		}
	})
}

// bootstrappedCluster is a valid three-member cluster with a partition table.
func bootstrappedCluster(t testing.TB) *failover.Cluster {
	t.Helper()
	c := failover.NewCluster()
	if _, err := c.Apply(bootstrapCommand("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	return c
}

func encodedSnapshot(t testing.TB, c *failover.Cluster, applied uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := encodeSnapshot(&buf, c, applied); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestEntriesWrittenBeforeCopiesLostStillDecode: the log of a cluster that
// ran a version without copies_lost holds entries like these; adding a
// command kind and a partition field must leave them readable as they were.
func TestEntriesWrittenBeforeCopiesLostStillDecode(t *testing.T) {
	old := append([]byte{encodingJSON}, `{"kind":"apply_actions","at":5,"actions":[{"kind":"promote","partition":0,"epoch":1,"node":"b","priority":1000}]}`+"\n"...)
	cmd, err := DecodeCommand(old)
	if err != nil {
		t.Fatal(err)
	}
	want := failover.Command{Kind: failover.CmdApplyActions, At: 5, Actions: []failover.Action{{Kind: failover.ActionPromote, Partition: 0, Epoch: 1, Node: "b", Priority: 1000}}}
	if !reflect.DeepEqual(cmd, want) {
		t.Fatalf("decoded %+v, want %+v", cmd, want)
	}
	c := bootstrappedCluster(t)
	data := encodedSnapshot(t, c, 3)
	if bytes.Contains(data, []byte("data_lost")) {
		t.Fatal("a partition not lost writes data_lost: snapshots of older versions would differ")
	}
}
