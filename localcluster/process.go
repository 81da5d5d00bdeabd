package localcluster

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one child process run again and again (a restart is a new
// run): its output goes to a log file, appended to across runs, and to a
// buffer holding the current run's output. It signals only the process it
// started, by PID.
type Process struct {
	mu      sync.Mutex
	name    string // in errors: the node ID, or the node ID and "app"
	cmd     *exec.Cmd
	logPath string
	logBuf  *bytes.Buffer
	exited  chan struct{}
	exitErr error
}

// start runs cmd with its output appended to logPath and kept in memory. A
// goroutine waits for the process; it ends when the process does.
func (p *Process) start(name string, cmd *exec.Cmd, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.logPath = name, logPath
	p.logBuf = &bytes.Buffer{}
	w := io.MultiWriter(f, &lockedWriter{mu: &p.mu, w: p.logBuf})
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	p.cmd = cmd
	exited := make(chan struct{})
	p.exited = exited
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Running reports whether the current run has been started and has not
// exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Exited is closed when the current run ends (nil before the first run).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// ExitErr is how the last run ended (nil for exit status 0, or while it
// runs).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// WaitExit waits up to timeout for the current run to end and returns its
// error; ok is false if it still runs.
func (p *Process) WaitExit(timeout time.Duration) (err error, ok bool) {
	select {
	case <-p.Exited():
		return p.ExitErr(), true
	case <-time.After(timeout):
		return nil, false
	}
}

// Log returns everything the current run has printed.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.logBuf == nil {
		return ""
	}
	return p.logBuf.String()
}

// Tail returns the last lines of the whole log file (every run).
func (p *Process) Tail(lines int) string {
	p.mu.Lock()
	path := p.logPath
	p.mu.Unlock()
	if path == "" {
		return "(never started)"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// Signal sends sig to the current run, if any.
func (p *Process) Signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Kill SIGKILLs the current run (continuing it first if it is paused) and
// waits for it to end. It does nothing if the process never started.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-exited
}

// StopWith sends sig and waits, however long it takes, for the run to end.
func (p *Process) StopWith(sig syscall.Signal) error {
	exited := p.Exited()
	if exited == nil {
		return nil
	}
	p.Signal(sig)
	<-exited
	return p.ExitErr()
}

// Stop sends SIGTERM and waits up to timeout for the run to end, and
// returns how it ended; after timeout it SIGKILLs it and returns an error.
func (p *Process) Stop(timeout time.Duration) error {
	p.Signal(syscall.SIGTERM)
	if err, ok := p.WaitExit(timeout); ok {
		return err
	}
	p.Kill()
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Errorf("%s did not exit within %s of SIGTERM", p.name, timeout)
}
