// Package ovntest is kovn's real-OVSDB test bed: it starts real ovsdb-server processes with the real OVN schemas
// (and ovn-northd when asked) in a fresh temporary directory per test, listening on unix sockets, hands back
// connected libovsdb clients, and stops everything when the test ends, whether it passed, failed or panicked.
// Servers also die with the test binary if it is killed (they get SIGKILL when their parent goes away).
//
// It needs ovsdb-server and ovsdb-tool (Debian: openvswitch-switch), and ovn-northd for WithNorthd
// (Debian: ovn-central).
package ovntest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/client"

	"github.com/kovn-io/kovn/go-controller/pkg/ovndb"
)

// Options says what to start besides the Northbound database.
type Options struct {
	// SB starts a Southbound ovsdb-server too.
	SB bool
	// Northd starts ovn-northd between NB and SB (implies SB).
	Northd bool
}

// OVN is a running set of OVN databases for one test.
type OVN struct {
	Dir string
	// NBRemote and SBRemote are OVSDB remotes ("unix:/path") for clients and daemons under test.
	NBRemote, SBRemote string
	// NB is a connected client of the Northbound database, monitoring all of it.
	NB client.Client
	// SB is a connected client of the Southbound database (nil unless asked for).
	SB client.Client

	procs []*proc
}

// StartNB starts a Northbound ovsdb-server and returns it with a connected client.
func StartNB(tb testing.TB) *OVN { return Start(tb, Options{}) }

// Start starts the databases opts asks for. Everything stops when tb ends.
func Start(tb testing.TB, opts Options) *OVN {
	tb.Helper()
	o, err := start(opts)
	if o != nil {
		tb.Cleanup(func() { o.stop(tb) })
	}
	if err != nil {
		tb.Fatalf("ovntest: %v", err)
	}
	return o
}

func start(opts Options) (*OVN, error) {
	if opts.Northd {
		opts.SB = true
	}
	// Unix socket paths are limited to 108 bytes: keep the directory short rather than under tb.TempDir().
	dir, err := os.MkdirTemp("", "kovn-ovn-")
	if err != nil {
		return nil, err
	}
	o := &OVN{Dir: dir}
	nbSock, err := o.startDB("nb", nbTemplate)
	if err != nil {
		return o, err
	}
	o.NBRemote = "unix:" + nbSock
	if opts.SB {
		sbSock, err := o.startDB("sb", sbTemplate)
		if err != nil {
			return o, err
		}
		o.SBRemote = "unix:" + sbSock
	}
	if opts.Northd {
		if err := o.startNorthd(); err != nil {
			return o, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if o.NB, err = ovndb.ConnectNB(ctx, ovndb.Config{Address: o.NBRemote}); err != nil {
		return o, err
	}
	if opts.SB {
		if o.SB, err = ovndb.ConnectSB(ctx, ovndb.Config{Address: o.SBRemote}); err != nil {
			return o, err
		}
	}
	return o, nil
}

// startDB copies a freshly created empty database file and serves it on a unix socket.
func (o *OVN) startDB(name string, tmpl *dbTemplate) (string, error) {
	data, err := tmpl.get()
	if err != nil {
		return "", err
	}
	db := filepath.Join(o.Dir, name+".db")
	if err := os.WriteFile(db, data, 0o600); err != nil {
		return "", err
	}
	sock := filepath.Join(o.Dir, name+".sock")
	p, err := startProc(o.Dir, name, "ovsdb-server", db,
		"--no-chdir",
		"--remote=punix:"+sock,
		"--unixctl="+filepath.Join(o.Dir, name+".ctl"),
		"--log-file="+filepath.Join(o.Dir, name+".log"),
	)
	if err != nil {
		return "", err
	}
	o.procs = append(o.procs, p)
	if err := p.waitSocket(sock, 10*time.Second); err != nil {
		return "", err
	}
	return sock, nil
}

func (o *OVN) startNorthd() error {
	p, err := startProc(o.Dir, "northd", "ovn-northd",
		"--no-chdir",
		"--ovnnb-db="+o.NBRemote,
		"--ovnsb-db="+o.SBRemote,
		"--unixctl="+filepath.Join(o.Dir, "northd.ctl"),
		"--log-file="+filepath.Join(o.Dir, "northd.log"),
	)
	if err != nil {
		return err
	}
	o.procs = append(o.procs, p)
	return nil
}

// PIDs returns the process IDs of the servers this OVN runs.
func (o *OVN) PIDs() []int {
	var pids []int
	for _, p := range o.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// LogTail returns the last lines of a daemon's log ("nb", "sb" or "northd").
func (o *OVN) LogTail(name string) string {
	return tail(filepath.Join(o.Dir, name+".log"), 20)
}

func (o *OVN) stop(tb testing.TB) {
	if o.NB != nil {
		o.NB.Close()
	}
	if o.SB != nil {
		o.SB.Close()
	}
	for i := len(o.procs) - 1; i >= 0; i-- {
		if err := o.procs[i].stop(); err != nil {
			tb.Logf("ovntest: %v", err)
		}
	}
	if tb.Failed() {
		for _, p := range o.procs {
			tb.Logf("ovntest: last lines of %s.log:\n%s", p.name, tail(filepath.Join(o.Dir, p.name+".log"), 20))
		}
	}
	if err := os.RemoveAll(o.Dir); err != nil {
		tb.Logf("ovntest: remove %s: %v", o.Dir, err)
	}
}

func (o *OVN) String() string { return fmt.Sprintf("OVN test bed in %s", o.Dir) }
