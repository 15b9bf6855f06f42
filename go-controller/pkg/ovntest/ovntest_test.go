package ovntest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
	"github.com/kovn-io/kovn/ovsdb-models/sbdb"
)

func alive(pid int) bool {
	// A zombie still answers kill(0); read its state instead.
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data))
	return len(fields) > 2 && fields[2] != "Z"
}

func TestStartNBServesAndCleansUp(t *testing.T) {
	var pids []int
	var dir string
	t.Run("run", func(t *testing.T) {
		o := StartNB(t)
		pids, dir = o.PIDs(), o.Dir
		if len(pids) != 1 || !alive(pids[0]) {
			t.Fatalf("want one live ovsdb-server, got %v", pids)
		}
		ops, err := o.NB.Create(&nbdb.LogicalSwitch{UUID: "ls1", Name: "s1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.NB.Transact(context.Background(), ops...); err != nil {
			t.Fatal(err)
		}
		var got []nbdb.LogicalSwitch
		if err := o.NB.List(context.Background(), &got); err != nil || len(got) != 1 || got[0].Name != "s1" {
			t.Fatalf("cache after commit: %v %+v", err, got)
		}
	})
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("ovsdb-server %d still running after the test ended", pid)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("test bed dir %s left behind: %v", dir, err)
	}
}

func TestEachTestGetsAFreshDatabase(t *testing.T) {
	a, b := StartNB(t), StartNB(t)
	ops, _ := a.NB.Create(&nbdb.LogicalSwitch{UUID: "ls1", Name: "only-in-a"})
	if _, err := a.NB.Transact(context.Background(), ops...); err != nil {
		t.Fatal(err)
	}
	if n := b.NB.Cache().Table(nbdb.LogicalSwitchTable).Len(); n != 0 {
		t.Fatalf("second server sees %d switches, want 0", n)
	}
}

// The helper tests below run only when re-executed by TestNoProcessLeftBehind, as a stand-in for a test that
// panics or a test binary that is killed.
func TestHelperStartAndPanic(t *testing.T) {
	if os.Getenv("KOVN_OVNTEST_HELPER") != "panic" {
		t.Skip("helper for TestNoProcessLeftBehind")
	}
	o := StartNB(t)
	writePIDs(t, o)
	panic("deliberate panic with a running ovsdb-server")
}

func TestHelperStartAndHang(t *testing.T) {
	if os.Getenv("KOVN_OVNTEST_HELPER") != "hang" {
		t.Skip("helper for TestNoProcessLeftBehind")
	}
	o := Start(t, Options{Northd: true})
	writePIDs(t, o)
	time.Sleep(time.Minute)
}

func writePIDs(t *testing.T, o *OVN) {
	var s []string
	for _, p := range o.PIDs() {
		s = append(s, strconv.Itoa(p))
	}
	if err := os.WriteFile(os.Getenv("KOVN_OVNTEST_PIDFILE"), []byte(strings.Join(s, " ")), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNoProcessLeftBehind(t *testing.T) {
	for _, tc := range []struct{ mode, test string }{
		{"panic", "TestHelperStartAndPanic"},
		{"hang", "TestHelperStartAndHang"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			pidFile := t.TempDir() + "/pids"
			cmd := exec.Command(os.Args[0], "-test.run=^"+tc.test+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), "KOVN_OVNTEST_HELPER="+tc.mode, "KOVN_OVNTEST_PIDFILE="+pidFile)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			deadline := time.Now().Add(20 * time.Second)
			for len(pids) == 0 && time.Now().Before(deadline) {
				if data, err := os.ReadFile(pidFile); err == nil && len(data) > 0 {
					for _, f := range strings.Fields(string(data)) {
						pid, _ := strconv.Atoi(f)
						pids = append(pids, pid)
					}
				} else {
					time.Sleep(10 * time.Millisecond)
				}
			}
			if len(pids) == 0 {
				_ = cmd.Process.Kill()
				t.Fatal("helper never reported its server PIDs")
			}
			if tc.mode == "hang" {
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
			_ = cmd.Wait()
			deadline = time.Now().Add(5 * time.Second)
			for _, pid := range pids {
				for alive(pid) && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if alive(pid) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					t.Errorf("process %d outlived its test binary (%s)", pid, tc.mode)
				}
			}
		})
	}
}

func TestNorthdTranslatesNBIntoSB(t *testing.T) {
	o := Start(t, Options{Northd: true})
	ops, err := o.NB.Create(&nbdb.LogicalSwitch{UUID: "ls1", Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.NB.Transact(context.Background(), ops...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var dps []sbdb.DatapathBinding
		err := o.SB.WhereCache(func(d *sbdb.DatapathBinding) bool { return d.ExternalIDs["name"] == "s1" }).List(context.Background(), &dps)
		if err == nil && len(dps) == 1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("ovn-northd did not create a Datapath_Binding for switch s1; northd log:\n%s", o.LogTail("northd"))
}

// BenchmarkStartNB measures start-to-ready of one Northbound server: database file, ovsdb-server, client
// connected with its monitor, and the teardown.
func BenchmarkStartNB(b *testing.B) {
	for b.Loop() {
		o, err := start(Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		o.stop(b)
		b.StartTimer()
	}
}
