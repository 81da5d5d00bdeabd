package raftctl

import (
	"github.com/hashicorp/raft"
	"github.com/steward-dev/steward/failover"
)

// BootstrapSettings returns the settings this server's stored state was
// bootstrapped with, and false when it has none yet (a new server, or one
// that has not received the bootstrap entry). It reads the restored
// snapshot if there is one, else the bootstrap entry in the local log, so
// that it answers at start-up, before raft has applied anything: the agent
// checks its bootstrap flags against it.
func (n *Node) BootstrapSettings() (failover.Settings, bool, error) {
	var s failover.Settings
	var ok bool
	n.Read(func(c *failover.Cluster) { s, ok = c.Settings, c.Bootstrapped })
	if ok {
		return s, true, nil
	}
	first, err := n.logs.FirstIndex()
	if err != nil {
		return s, false, err
	}
	last, err := n.logs.LastIndex()
	if err != nil {
		return s, false, err
	}
	if first == 0 {
		return s, false, nil
	}
	var l raft.Log
	for i := first; i <= last; i++ {
		if err := n.logs.GetLog(i, &l); err != nil {
			if err == raft.ErrLogNotFound {
				continue
			}
			return s, false, err
		}
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := DecodeCommand(l.Data)
		if err != nil || cmd.Kind != failover.CmdBootstrap || cmd.Settings == nil {
			continue
		}
		return *cmd.Settings, true, nil
	}
	return s, false, nil
}
