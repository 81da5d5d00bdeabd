// Package hooks carries Steward's webhooks between an agent and the app next
// to it.
//
// # App side
//
// Apps import this package to receive events: Verify checks a delivery's
// Standard Webhooks signature and timestamp, ParseEvent turns a request into
// a validated Event, and Handler is an http.Handler with one typed callback
// per event type. AckMigration and FailMigration tell the agent that a copy
// the app answered 202 to has finished or failed. ReportHoldings tells the
// agent, at every start of the app, which partitions it really holds, so
// that copies it lost are re-created instead of trusted (see the holdings
// report in holdings.go). None of this needs the agent's code at run time:
// it is plain HTTP, JSON and HMAC, and importing this package pulls in no
// raft, gossip or logging library.
//
// Events are idempotent and keyed by (partition, epoch): the agent delivers
// at least once, retries the same webhook-id until it gets a 2xx, and may
// redeliver after a crash. An app must ignore an event whose epoch is older
// than one it already applied for that partition, and must treat a repeat of
// the same (partition, epoch, type) as already done.
//
// # Agent side
//
// Desired computes, from the replicated cluster state, what one node's app
// should hold. A Deliverer compares that with what the app has acknowledged
// (kept crash-safe in an AckStore in the data dir) and delivers signed events
// until the two agree: level-triggered, per partition in epoch order, a newer
// epoch superseding an undelivered older one, retried with capped
// exponential backoff and full jitter. When the app reports its holdings,
// Deliverer.AppHoldings forgets what it acknowledged and no longer has, so
// that it is delivered again.
package hooks
