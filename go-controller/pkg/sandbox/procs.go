package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the sandbox started.
type Proc struct {
	Name  string   `json:"name"`
	PID   int      `json:"pid"`
	Netns string   `json:"netns,omitempty"`
	Log   string   `json:"log"`
	Env   []string `json:"env,omitempty"`
	Cmd   []string `json:"cmd,omitempty"` // binary and arguments, to restart it
}

// State is everything `down` needs to undo `up`, written after every step so a crash halfway leaves a record.
type State struct {
	Dir        string   `json:"dir"`
	Nodes      []Node   `json:"nodes"`
	Procs      []Proc   `json:"procs"`
	Netns      []string `json:"netns"`
	HostLink   string   `json:"hostLink,omitempty"`
	Kubeconfig string   `json:"kubeconfig,omitempty"`
	APIServer  string   `json:"apiServer,omitempty"`
	Encap      string   `json:"encap,omitempty"`
}

// Node is one sandbox node.
type Node struct {
	Name  string `json:"name"`
	Netns string `json:"netns"`
	IP    string `json:"ip"`
	Dir   string `json:"dir"`
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// LoadState reads the state of the sandbox in dir.
func LoadState(dir string) (*State, error) {
	data, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, fmt.Errorf("no sandbox in %s: %w", dir, err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("sandbox state %s: %w", statePath(dir), err)
	}
	return &s, nil
}

func (s *State) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(s.Dir))
}

// start runs a long-lived process, in a network namespace when netns is set, detached into its own session
// so it outlives `kovn sandbox up`, with its output in logs/NAME.log. It is recorded before start returns.
func (s *State) start(name, netns string, env []string, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(s.Dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmdArgs := append([]string{path}, args...)
	if netns != "" {
		cmdArgs = append([]string{"ip", "netns", "exec", netns}, cmdArgs...)
	}
	cmd := exec.Command(cmdArgs[0], cmdArgs[1:]...)
	if cmd.Path, err = exec.LookPath(cmdArgs[0]); err != nil {
		return nil, err
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := Proc{Name: name, PID: cmd.Process.Pid, Netns: netns, Log: logPath, Env: env, Cmd: append([]string{bin}, args...)}
	_ = cmd.Process.Release()
	s.Procs = append(s.Procs, p)
	return &p, s.save()
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return len(f) > 2 && f[2] != "Z"
}

// stopPID sends SIGTERM to a process's session, then SIGKILL after timeout.
func stopPID(pid int, timeout time.Duration) {
	if pid <= 1 || !alive(pid) {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !alive(pid) {
			return
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// killInNetns kills every process whose network namespace is the named one (pod workloads, strays).
func killInNetns(name string) {
	var st syscall.Stat_t
	if err := syscall.Stat("/var/run/netns/"+name, &st); err != nil {
		return
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && link == want {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Restart stops one of the sandbox's processes and starts it again with the same command (to test that kovn
// survives restarts of its components).
func Restart(dir, name string) (int, error) {
	s, err := LoadState(dir)
	if err != nil {
		return 0, err
	}
	for i, p := range s.Procs {
		if p.Name != name {
			continue
		}
		if len(p.Cmd) == 0 {
			return 0, fmt.Errorf("%s cannot be restarted (no command recorded)", name)
		}
		stopPID(p.PID, 5*time.Second)
		s.Procs = append(s.Procs[:i], s.Procs[i+1:]...)
		np, err := s.start(p.Name, p.Netns, p.Env, p.Cmd[0], p.Cmd[1:]...)
		if err != nil {
			return 0, err
		}
		return np.PID, nil
	}
	return 0, fmt.Errorf("no sandbox process named %q", name)
}
