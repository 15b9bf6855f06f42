// Package e2e is kovn's end-to-end suite: it brings up a real 3-node sandbox with the built binaries
// (`kovn sandbox up`), sends real packets between pods and nodes, restarts kovn's components, and checks that
// `kovn sandbox down` leaves nothing behind. `make test` builds the binaries and runs it.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kovn-io/kovn/go-controller/pkg/sandbox"
)

// The suite's sandbox, shared by all tests.
var (
	kovnBin  string
	stateDir string
	state    *sandbox.State
	kube     kubernetes.Interface
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse() // testing.Short below reads the flags m.Run would parse later
	kovnBin = os.Getenv("KOVN_BIN")
	if kovnBin == "" || os.Getenv("KOVN_KUBE_BIN") == "" {
		if testing.Short() || os.Getenv("KOVN_E2E") == "" {
			fmt.Println("e2e: KOVN_BIN / KOVN_KUBE_BIN not set: run `make test`, which builds the binaries and sets them")
			return 0
		}
		fmt.Println("e2e: KOVN_BIN and KOVN_KUBE_BIN must be set")
		return 1
	}
	if _, err := os.Stat("/var/run/netns/kovnsb-underlay"); err == nil {
		fmt.Println("e2e: a sandbox is already running on this machine: run `kovn sandbox down` first")
		return 1
	}
	dir, err := os.MkdirTemp("", "kovn-e2e-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if err := crashHalfwayThenDown(filepath.Join(dir, "crashed")); err != nil {
		fmt.Println("e2e:", err)
		return 1
	}
	stateDir = filepath.Join(dir, "sb")
	start := time.Now()
	out, err := exec.Command(kovnBin, "sandbox", "up", "--nodes=3", "--state-dir="+stateDir).CombinedOutput()
	if err != nil {
		fmt.Printf("e2e: sandbox up failed: %v\n%s\n", err, out)
		_ = exec.Command(kovnBin, "sandbox", "down", "--state-dir="+stateDir).Run()
		return 1
	}
	fmt.Printf("e2e: sandbox up in %s\n", time.Since(start).Round(time.Millisecond))
	code := func() int {
		if state, err = sandbox.LoadState(stateDir); err != nil {
			fmt.Println(err)
			return 1
		}
		if kube, err = sandbox.Client(state); err != nil {
			fmt.Println(err)
			return 1
		}
		return m.Run()
	}()
	if code != 0 {
		dumpLogs()
		if os.Getenv("KOVN_E2E_KEEP") != "" {
			fmt.Printf("e2e: KOVN_E2E_KEEP set: the failed sandbox stays in %s (kovn sandbox down --state-dir %s)\n", stateDir, stateDir)
			return code
		}
	}
	if err := down(); err != nil {
		fmt.Println("e2e:", err)
		code = 1
	}
	_ = os.RemoveAll(dir)
	return code
}

// down tears the sandbox down and checks that no process, namespace or socket is left.
func down() error {
	pids := map[string]int{}
	if state != nil {
		for _, p := range state.Procs {
			pids[p.Name] = p.PID
		}
	}
	if s, err := sandbox.LoadState(stateDir); err == nil { // restarted processes have new PIDs
		for _, p := range s.Procs {
			pids[p.Name] = p.PID
		}
	}
	if out, err := exec.Command(kovnBin, "sandbox", "down", "--state-dir="+stateDir).CombinedOutput(); err != nil {
		return fmt.Errorf("sandbox down: %v: %s", err, out)
	}
	var left []string
	for name, pid := range pids {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(data), ") Z ") {
			left = append(left, fmt.Sprintf("process %s (%d)", name, pid))
		}
	}
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "kovnsb-") {
			left = append(left, "netns "+e.Name())
		}
	}
	if _, err := os.Stat(stateDir); err == nil {
		left = append(left, "state directory "+stateDir)
	}
	if len(left) > 0 {
		return fmt.Errorf("sandbox down left %v", left)
	}
	return nil
}

// crashHalfwayThenDown kills `kovn sandbox up` in the middle of its work (after its control plane and some
// namespaces exist) and checks that `kovn sandbox down` still removes everything.
func crashHalfwayThenDown(dir string) error {
	up := exec.Command(kovnBin, "sandbox", "up", "--nodes=3", "--state-dir="+dir)
	if err := up.Start(); err != nil {
		return err
	}
	// Wait until node2's namespace exists: control plane, OVN central and node1 run, node2 is on its way.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat("/var/run/netns/kovnsb-node2"); err == nil {
			break
		}
	}
	_ = up.Process.Kill()
	_ = up.Wait()
	s, err := sandbox.LoadState(dir)
	if err != nil {
		return fmt.Errorf("crashed up left no state: %w", err)
	}
	stateDir, state = dir, s
	defer func() { stateDir, state = "", nil }()
	if err := down(); err != nil {
		return fmt.Errorf("after a crash of up halfway (%d processes recorded): %w", len(s.Procs), err)
	}
	fmt.Printf("e2e: up killed halfway with %d processes started; down left nothing\n", len(s.Procs))
	return nil
}

func dumpLogs() {
	files, _ := filepath.Glob(filepath.Join(stateDir, "logs", "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Printf("---- %s\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
}
