package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func TestLoadReportIsCheckedBeforeItCounts(t *testing.T) {
	good := `{"disk": {"capacity_bytes": 1000, "used_bytes": 400}, "partitions": [{"partition": 3, "size_bytes": 10, "load": 2.5}]}`
	figs, err := decodeLoadReport(strings.NewReader(good), 8)
	if err != nil {
		t.Fatalf("a good report: %v", err)
	}
	if figs.DiskCapacity != 1000 || figs.DiskUsed != 400 || figs.Copies[3] != (failover.CopyFigures{Size: 10, Load: 2.5}) {
		t.Fatalf("decoded %+v", figs)
	}
	if _, err := decodeLoadReport(strings.NewReader(`{"partitions": []}`), 8); err != nil {
		t.Errorf("a report of nothing held, without a disk: %v", err)
	}
	bad := map[string]string{
		"no partitions":       `{"disk": {"capacity_bytes": 1, "used_bytes": 0}}`,
		"unknown field":       `{"partitions": [], "cpu": 3}`,
		"unknown partition":   `{"partitions": [{"partition": 8, "size_bytes": 1, "load": 1}]}`,
		"negative partition":  `{"partitions": [{"partition": -1, "size_bytes": 1, "load": 1}]}`,
		"listed twice":        `{"partitions": [{"partition": 1, "size_bytes": 1, "load": 1}, {"partition": 1, "size_bytes": 1, "load": 1}]}`,
		"negative size":       `{"partitions": [{"partition": 1, "size_bytes": -1, "load": 1}]}`,
		"negative load":       `{"partitions": [{"partition": 1, "size_bytes": 1, "load": -0.5}]}`,
		"used over capacity":  `{"disk": {"capacity_bytes": 10, "used_bytes": 11}, "partitions": []}`,
		"no capacity":         `{"disk": {"capacity_bytes": 0, "used_bytes": 0}, "partitions": []}`,
		"trailing data":       `{"partitions": []} {}`,
		"not json":            `disk=95%`,
		"load not a number":   `{"partitions": [{"partition": 1, "size_bytes": 1, "load": "hot"}]}`,
		"partitions not list": `{"partitions": {"1": 2}}`,
	}
	for name, body := range bad {
		if _, err := decodeLoadReport(strings.NewReader(body), 8); err == nil {
			t.Errorf("%s: %s was accepted", name, body)
		}
	}
}

func TestLoadReportGoesToTheLeaderWhenNewOrDue(t *testing.T) {
	a := &Agent{}
	now := time.Now()
	if f, _ := a.loadToSend("n1", now); f != nil {
		t.Fatal("a report to send before the app posted one")
	}
	a.appLoad.figures, a.appLoad.postedAt = &failover.NodeFigures{DiskUsed: 1}, now
	f, age := a.loadToSend("n1", now.Add(time.Second))
	if f == nil || age != time.Second {
		t.Fatalf("a new report: %v, age %v; want it, 1s old", f, age)
	}
	a.loadSent("n1", now.Add(time.Second))
	if f, _ := a.loadToSend("n1", now.Add(2*time.Second)); f != nil {
		t.Error("the same report again to the same leader a second later")
	}
	if f, _ := a.loadToSend("n2", now.Add(2*time.Second)); f == nil {
		t.Error("a new leader did not get the report")
	}
	if f, _ := a.loadToSend("n1", now.Add(12*time.Second)); f == nil {
		t.Error("the report was not sent again a third of the leader's TTL later")
	}
	if f, _ := a.loadToSend("n1", now.Add(31*time.Second)); f != nil {
		t.Error("a report the app has not renewed for longer than the TTL was sent")
	}
}
