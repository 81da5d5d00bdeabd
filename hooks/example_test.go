package hooks_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// An app builds a Handler with the callbacks it cares about and serves it
// where the agent's -webhook-url points.
func Example() {
	secret, err := hooks.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		log.Fatal(err)
	}
	handler := &hooks.Handler{
		Secret: secret,
		OnAssign: func(ctx context.Context, ev hooks.Event) hooks.Response {
			if ev.Source != nil {
				// Start copying from ev.Source.AppAddr in the background,
				// then call hooks.AckMigration(ctx, nil, agentURL,
				// ev.MigrationID, token) when done.
				fmt.Printf("copy partition %d from %s (epoch %d)\n", ev.Partition, ev.Source.NodeID, ev.Epoch)
				return hooks.Copying()
			}
			fmt.Printf("hold partition %d as %s (epoch %d)\n", ev.Partition, ev.Role, ev.Epoch)
			return hooks.Ack()
		},
		OnPromote: func(ctx context.Context, ev hooks.Event) hooks.Response {
			fmt.Printf("now primary of partition %d (epoch %d)\n", ev.Partition, ev.Epoch)
			return hooks.Ack()
		},
	}
	mux := http.NewServeMux()
	mux.Handle("POST /steward/events", handler)

	// What the agent sends, signed with the same secret.
	deliver := func(id, body string) {
		req := httptest.NewRequest(http.MethodPost, "/steward/events", strings.NewReader(body))
		hooks.SignHeaders(req.Header, secret, id, time.Now(), []byte(body))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		fmt.Println("answer", w.Code)
	}
	deliver("n1-p3-e7-assign", `{"id":"n1-p3-e7-assign","type":"partition.assign","node_id":"n1","partition":3,"epoch":7,"role":"replica","source":{"node_id":"n2","app_addr":"127.0.0.1:7001"},"migration_id":"m12"}`)
	deliver("n1-p3-e8-promote", `{"id":"n1-p3-e8-promote","type":"partition.promote","node_id":"n1","partition":3,"epoch":8,"role":"primary"}`)
	deliver("n1-p3-e9-demote", `{"id":"n1-p3-e9-demote","type":"partition.demote","node_id":"n1","partition":3,"epoch":9,"role":"replica"}`)

	// Output:
	// copy partition 3 from n2 (epoch 7)
	// answer 202
	// now primary of partition 3 (epoch 8)
	// answer 204
	// answer 204
}
