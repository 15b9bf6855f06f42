package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/namedns"
)

// PrintStatus writes the sandbox's nodes and processes with their state and resident memory.
func PrintStatus(w io.Writer, s *State) error {
	fmt.Fprintf(w, "state dir:  %s\nkubeconfig: %s\napiserver:  %s\nencap:      %s\nexternal:   %s (netns %s; TCP 80, UDP 81 answer with the client address)\n\nnodes:\n",
		s.Dir, s.Kubeconfig, s.APIServer, s.Encap, ExternalIP, externalNS)
	for _, n := range s.Nodes {
		fmt.Fprintf(w, "  %-8s %-16s netns %s\n", n.Name, n.IP, n.Netns)
	}
	fmt.Fprintf(w, "\n%-28s %8s %8s %10s\n", "process", "pid", "state", "rss")
	for _, p := range s.Procs {
		state, rss := "stopped", "-"
		if alive(p.PID) {
			state, rss = "running", rssOf(p.PID)
		}
		fmt.Fprintf(w, "%-28s %8d %8s %10s\n", p.Name, p.PID, state, rss)
	}
	return nil
}

// rssOf returns a process's resident set size (VmRSS).
func rssOf(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "-"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}
	}
	return "-"
}

// PodNetns returns the network namespace path of a sandbox pod ("namespace/name"), from the kubelets' records;
// "external" names the external host.
func PodNetns(dir, pod string) (string, error) {
	if pod == "external" {
		return namedns.Path(externalNS), nil
	}
	files, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", "kubelet-pods.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var pods map[string]struct {
			Netns string `json:"netns"`
		}
		if json.Unmarshal(data, &pods) == nil {
			if p, ok := pods[pod]; ok {
				return p.Netns, nil
			}
		}
	}
	return "", fmt.Errorf("pod %s is not running in the sandbox in %s (want NAMESPACE/NAME)", pod, dir)
}
