package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPublishLoadSendsTheReportAndTellsARefusalApart(t *testing.T) {
	var got LoadReport
	var auth string
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != LoadPath || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "wrong path or type", http.StatusNotFound)
			return
		}
		auth, got = r.Header.Get("Authorization"), LoadReport{}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil || got.Disk == nil {
			http.Error(w, `{"error":"bad report"}`, http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(LoadResult{Node: "n1", Partitions: len(got.Partitions)})
	}))
	defer agent.Close()

	res, err := PublishLoad(context.Background(), agent.Client(), agent.URL+"/", "tok", LoadReport{
		Disk:       &DiskUsage{CapacityBytes: 100, UsedBytes: 96},
		Partitions: []PartitionLoad{{Partition: 2, SizeBytes: 10, Load: 3.5}},
	})
	if err != nil || res.Node != "n1" || res.Partitions != 1 {
		t.Fatalf("publish: %+v, %v", res, err)
	}
	if auth != "Bearer tok" || got.Partitions[0] != (PartitionLoad{Partition: 2, SizeBytes: 10, Load: 3.5}) || got.Disk.UsedBytes != 96 {
		t.Fatalf("the agent got %+v with %q", got, auth)
	}

	_, err = PublishLoad(context.Background(), agent.Client(), agent.URL, "", LoadReport{})
	if !errors.Is(err, ErrLoadRefused) || !strings.Contains(err.Error(), "bad report") {
		t.Fatalf("a refused report: %v, want ErrLoadRefused with the agent's reason", err)
	}
	if len(got.Partitions) != 0 || got.Partitions == nil {
		t.Errorf("no partitions went as %v, want []", got.Partitions)
	}
}
