package sandbox

import (
	"fmt"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/namedns"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Down stops every process the sandbox started (by PID, newest first), kills anything left in its network
// namespaces, deletes the namespaces and the state directory. It works from whatever an `up` recorded, also
// one that crashed halfway, and is harmless to run twice.
func Down(dir string, log *slog.Logger) error {
	s, err := LoadState(dir)
	if err != nil {
		// No state: still remove namespaces a crashed run may have left.
		s = &State{Dir: dir}
	}
	// Pod workloads and anything else started inside the namespaces, then the recorded daemons.
	for _, n := range namedns.List(nsPrefix) {
		killInNetns(n)
	}
	procs := slices.Clone(s.Procs)
	slices.Reverse(procs)
	for _, p := range procs {
		stopPID(p.PID, 5*time.Second)
	}
	var failed []string
	for _, p := range procs {
		if alive(p.PID) {
			failed = append(failed, fmt.Sprintf("%s (%d)", p.Name, p.PID))
		}
	}
	for _, n := range namedns.List(nsPrefix) {
		killInNetns(n)
		if err := namedns.Delete(n); err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("sandbox down: could not stop %v", failed)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	log.Info("sandbox down", "processes", len(procs), "dir", dir)
	return nil
}
