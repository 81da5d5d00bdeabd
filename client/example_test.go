package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/steward-dev/steward/client"
)

// A router keeps the partition table current through the agents' watch
// stream and answers where a key's requests go: the app address of the
// primary of the key's partition, with its epoch.
func ExampleRouter() {
	// One agent in this process, for the example; a real router lists
	// the HTTP addresses of several agents.
	a, stop, err := runAgent("node1", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	cfg := client.DefaultConfig()
	cfg.Addresses = []string{a.HTTPAddr()}
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	router := client.NewRouter(c, client.DefaultRouterConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }() // the caller owns the goroutine
	defer func() { cancel(); <-done }()

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := router.WaitReady(wctx); err != nil {
		log.Fatal(err)
	}
	route, err := router.Route("", "user:42") // "": the default resource
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("user:42 is in partition %d, served by %s at %s\n", route.Partition, route.Primary, route.AppAddr)
	// Output: user:42 is in partition 2, served by node1 at 127.0.0.1:8080
}

// Wait for the next change of the partition table with a blocking query:
// the index of one answer is the starting point of the next.
func ExampleClient_Partitions() {
	a, stop, err := runAgent("node1", "")
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	cfg := client.DefaultConfig()
	cfg.Addresses = []string{a.HTTPAddr()}
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	table, meta, err := c.Partitions(ctx, client.QueryOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d partitions\n", len(table.Partitions))

	// Nothing changes here, so this one returns when its wait is over,
	// with the same index; a change would have returned it at once.
	_, next, err := c.Partitions(ctx, client.QueryOptions{WaitIndex: meta.Index, Wait: 100 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same state:", next.Index == meta.Index)
	// Output:
	// 16 partitions
	// same state: true
}
