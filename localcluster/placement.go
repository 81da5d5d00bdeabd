package localcluster

import (
	"os"
	"os/exec"
	"syscall"
)

// Placement is where a node's processes (agent and app) run: the address
// they bind and the uid they run as. The zero UID is the caller's own.
type Placement struct {
	Host string
	UID  int
}

// DefaultPlacement is 127.0.0.1 as the caller's user.
var DefaultPlacement = Placement{Host: "127.0.0.1"}

// host is the placement's address, 127.0.0.1 for the zero Placement.
func (pl Placement) host() string {
	if pl.Host == "" {
		return DefaultPlacement.Host
	}
	return pl.Host
}

// RunAs makes cmd run as the placement's uid (and gid), if it has one.
func (pl Placement) RunAs(cmd *exec.Cmd) {
	if pl.UID == 0 {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(pl.UID), Gid: uint32(pl.UID)}}
}

// OwnDir creates dir (if missing) owned by the placement's uid with mode
// 0700: the agent refuses a data dir another user owns, and an app of the
// node needs its own dirs too. With the caller's own uid it only creates it.
func (pl Placement) OwnDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if pl.UID == 0 {
		return nil
	}
	return os.Chown(dir, pl.UID, pl.UID)
}
