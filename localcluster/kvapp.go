package localcluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// KVApp is the example kvapp (examples/kvapp) next to one agent: it binds
// its placement's address and runs as its uid, so that a network fault
// cuts the app with its agent. Start runs it again after a Stop or Kill,
// on the same port and data dir.
type KVApp struct {
	Process

	// Bin is the kvapp binary.
	Bin string
	// Placement is its agent's.
	Placement
	// Port is the port of its HTTP API (the key-value API and the webhook
	// endpoint), chosen by NewKVApp.
	Port int
	// Secret is the webhook secret it checks signatures with.
	Secret string
	// LogLevel is its --log-level; empty leaves its default.
	LogLevel string
	// DataDir is its --data-dir (set by Start): it survives the app's
	// restarts unless wiped.
	DataDir string
	// Args are flags given at every start, after the launcher's own.
	Args []string
}

// NewKVApp declares a kvapp on a fresh port; it is not started.
func NewKVApp(bin string, pl Placement, secret string) (*KVApp, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &KVApp{Bin: bin, Placement: pl, Port: port, Secret: secret}, nil
}

// Addr is the address of the app's HTTP API.
func (k *KVApp) Addr() string { return net.JoinHostPort(k.host(), strconv.Itoa(k.Port)) }

// WebhookURL is where the app takes the agent's webhooks.
func (k *KVApp) WebhookURL() string { return "http://" + k.Addr() + "/steward/events" }

// AgentFlags are the agent flags that bind the agent to this app, its
// webhooks going to webhookURL (the app's own, or a proxy's in front of it).
func (k *KVApp) AgentFlags(webhookURL string) []string {
	return []string{
		"-webhook-url", webhookURL,
		"-app-addr", k.Addr(),
		"-app-health-url", "http://" + k.Addr() + "/healthz",
		"-webhook-secret", k.Secret,
	}
}

// Start runs the app for the agent at agentAPIAddr, with its data in
// nodeDir+".app" and its log in nodeDir+".app.log" (nodeDir is the agent's
// data dir: a restarted node has both back).
func (k *KVApp) Start(agentAPIAddr, nodeDir string) error {
	k.DataDir = nodeDir + ".app"
	if err := k.OwnDir(k.DataDir); err != nil {
		return err
	}
	args := []string{"--addr", k.Addr(), "--agent", "http://" + agentAPIAddr, "--data-dir", k.DataDir, "--webhook-secret", k.Secret}
	if k.LogLevel != "" {
		args = append(args, "--log-level", k.LogLevel)
	}
	args = append(args, k.Args...)
	cmd := exec.Command(k.Bin, args...)
	k.RunAs(cmd)
	if err := k.start(filepath.Base(nodeDir)+"'s app", cmd, nodeDir+".app.log"); err != nil {
		return fmt.Errorf("starting kvapp: %w", err)
	}
	return nil
}

// StopApp sends sig to the app, if it runs, and waits for it to exit.
func (k *KVApp) StopApp(sig syscall.Signal) {
	if k.Running() {
		_ = k.StopWith(sig)
	}
}

// WipeData removes the app's data dir, as a lost disk does; the app must
// not be running.
func (k *KVApp) WipeData() error {
	if k.Running() {
		return errors.New("localcluster: wiping the data dir of a running app")
	}
	return os.RemoveAll(k.DataDir)
}
