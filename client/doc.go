// Package client is the Go client of a Steward agent's HTTP API, for apps,
// routers and proxies that need to know where a key's requests go, and for
// the agent's own command line.
//
// A Client talks to one of several agents (Config.Addresses), moving on to
// the next when one cannot be reached. Its typed calls read the views
// (Status, Members, Partitions) and change a few things (Leave,
// SetMaintenance); Do sends any other request. Members and Partitions
// become blocking queries with QueryOptions.WaitIndex: the agent holds the
// answer until the cluster state has moved past that index (the
// X-Steward-Index of an earlier answer, Meta.Index) or the wait passes.
// Watch follows the agent's Server-Sent Events stream (GET /v1/watch): the
// full views first, then each change as it is committed, and heartbeats.
//
// A Router keeps the partition table and the members' app addresses
// current by following the stream, moving to another agent when its agent
// goes away or loses contact with the leader (its table could be stale),
// and answers Route(resource, key): the partition, its epoch and the app
// address of its primary. Keys map to partitions with
// failover.PartitionForKey, the one mapping the apps use too.
//
// The package imports no raft, gossip or logging library: only the
// standard library and Steward's pure failover package (the table's types
// and the key mapping).
package client
