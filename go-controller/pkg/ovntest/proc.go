package ovntest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	ovsdbmodels "github.com/kovn-io/kovn/ovsdb-models"
)

// proc is one daemon started by the test bed.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set when done is closed
}

// startProc starts a daemon in the foreground with its run and log directories set to dir, so that it never
// touches the system's /var/run/openvswitch. It gets SIGKILL if the test binary dies.
func startProc(dir, name, bin string, args ...string) (*proc, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w (install openvswitch-switch and ovn-central, or run `make deps`)", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(),
		"OVS_RUNDIR="+dir, "OVS_LOGDIR="+dir, "OVS_DBDIR="+dir,
		"OVN_RUNDIR="+dir, "OVN_LOGDIR="+dir, "OVN_DBDIR="+dir,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// waitSocket waits until the daemon accepts connections on a unix socket, or fails early when it exits.
func (p *proc) waitSocket(sock string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := 500 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before listening on %s (%v): %s", p.name, sock, p.err,
				tail(strings.TrimSuffix(sock, ".sock")+".out", 10))
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %s", p.name, sock, timeout)
		}
	}
}

// stop sends SIGTERM to the daemon's process group, then SIGKILL if it has not exited within two seconds.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(2 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pgid)
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dbTemplate is an empty database file for one schema, created once per test binary with ovsdb-tool and copied
// for every server, which saves a process start per test.
type dbTemplate struct {
	schema []byte
	once   sync.Once
	data   []byte
	err    error
}

var (
	nbTemplate = &dbTemplate{schema: ovsdbmodels.NBSchema}
	sbTemplate = &dbTemplate{schema: ovsdbmodels.SBSchema}
)

func (t *dbTemplate) get() ([]byte, error) {
	t.once.Do(func() { t.data, t.err = createDB(t.schema) })
	return t.data, t.err
}

func createDB(schema []byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "kovn-ovsdb-tmpl-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	schemaPath := filepath.Join(dir, "schema.ovsschema")
	if err := os.WriteFile(schemaPath, schema, 0o600); err != nil {
		return nil, err
	}
	dbPath := filepath.Join(dir, "db")
	var stderr bytes.Buffer
	cmd := exec.Command("ovsdb-tool", "create", dbPath, schemaPath)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("ovsdb-tool not found (install openvswitch-switch, or run `make deps`)")
		}
		return nil, fmt.Errorf("ovsdb-tool create: %w: %s", err, stderr.String())
	}
	return os.ReadFile(dbPath)
}
