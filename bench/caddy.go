package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// caddyProc is one Caddy process the bench started (on core 0 when pinned: taskset execs Caddy,
// so the pid is Caddy's).
type caddyProc struct {
	cmd         *exec.Cmd
	pid         int
	admin, port int
	exited      chan struct{}
}

// startCaddy starts bin with the Caddyfile config makes for the admin and site ports it is given,
// in dir (its Caddyfile, and Caddy's data and config homes), and waits until up (a URL on the
// site port, built from that port) answers. freePort's ports are free when it answers, not
// necessarily when Caddy binds them (another process may take one meanwhile): a Caddy that exits
// at start is tried again on others.
func startCaddy(hc *http.Client, bin, dir string, config func(admin, port int) string, up func(port int) string) (*caddyProc, error) {
	for attempt := 1; ; attempt++ {
		admin, port := freePort(), freePort()
		cfgPath := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cfgPath, []byte(config(admin, port)), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
		if pinned {
			cmd = exec.Command("taskset", "-c", "0", bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
		}
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		c := &caddyProc{cmd: cmd, pid: cmd.Process.Pid, admin: admin, port: port, exited: make(chan struct{})}
		go func() {
			_ = cmd.Wait()
			close(c.exited)
		}()
		atFatal(c.stop)
		err := waitUp(hc, up(port), c.exited)
		if err == nil {
			return c, nil
		}
		c.stop()
		if !errors.Is(err, errExited) || attempt == 3 {
			return nil, err
		}
		fmt.Fprintln(os.Stderr, "bench: Caddy exited at start; trying other ports")
	}
}

// stop ends the process and waits for it.
func (c *caddyProc) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	<-c.exited
}
