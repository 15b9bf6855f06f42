package controller

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// BenchmarkControllerScale runs the real `kovn controller` binary ($KOVN_BIN, built by `make bench`) against a
// real kube-apiserver and an empty real NB:
//   - cold sync: 100 nodes and 10,000 pods exist before the controller starts; time until every pod has its
//     logical switch port, NB transactions committed (counted in the database file), controller peak RSS;
//   - steady state: pods created at 50/s; latency from the create call's return to the port's arrival in NB,
//     p50 and p99.
//
// Sizes can be lowered with KOVN_BENCH_NODES / KOVN_BENCH_PODS / KOVN_BENCH_STEADY_PODS.
func BenchmarkControllerScale(b *testing.B) {
	bin := os.Getenv("KOVN_BIN")
	if bin == "" {
		b.Fatal("set KOVN_BIN to the kovn binary (make bench does)")
	}
	nodes, pods, steady := envInt("KOVN_BENCH_NODES", 100), envInt("KOVN_BENCH_PODS", 10000), envInt("KOVN_BENCH_STEADY_PODS", 500)
	for b.Loop() {
		e := newEnv(b, config.Default())
		ports := watchPorts(e)
		e.createNamespace("bench")
		for i := range nodes {
			e.createNode(fmt.Sprintf("node-%03d", i), nil)
		}
		parallel(pods, 16, func(i int) error {
			return e.createPodErr("bench", fmt.Sprintf("pod-%05d", i), fmt.Sprintf("node-%03d", i%nodes))
		})
		txBefore := countTxns(b, filepath.Join(e.ovn.Dir, "nb.db"))

		start := time.Now()
		pid := startControllerProcess(b, e, bin)
		for ports.count() < pods {
			time.Sleep(10 * time.Millisecond)
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("cold sync did not converge: %d/%d ports", ports.count(), pods)
			}
		}
		sync := time.Since(start)
		txns := countTxns(b, filepath.Join(e.ovn.Dir, "nb.db")) - txBefore

		var lat []time.Duration
		tick := time.NewTicker(20 * time.Millisecond) // 50 pods/s
		for i := range steady {
			<-tick.C
			name := fmt.Sprintf("steady-%04d", i)
			if err := e.createPodErr("bench", name, fmt.Sprintf("node-%03d", i%nodes)); err != nil {
				b.Fatal(err)
			}
			ports.expect("bench_"+name, time.Now())
		}
		tick.Stop()
		deadline := time.Now().Add(time.Minute)
		for ports.count() < pods+steady && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		lat = ports.latencies()
		rss := peakRSS(b, pid)
		b.ReportMetric(sync.Seconds(), "coldsync-s")
		b.ReportMetric(float64(txns), "coldsync-nb-txns")
		b.ReportMetric(float64(rss)/1024, "peak-rss-MiB")
		b.ReportMetric(percentile(lat, 50), "p50-ms")
		b.ReportMetric(percentile(lat, 99), "p99-ms")
		b.Logf("%d nodes, %d pods: cold sync %s, %d NB transactions, controller peak RSS %d MiB; %d pods at 50/s: p50 %.1f ms, p99 %.1f ms (%d measured)",
			nodes, pods, sync.Round(time.Millisecond), txns, rss/1024, steady, percentile(lat, 50), percentile(lat, 99), len(lat))
	}
}

// portWatch records when pod ports arrive in the NB client cache.
type portWatch struct {
	mu       sync.Mutex
	n        atomic.Int64
	arrived  map[string]time.Time
	expected map[string]time.Time
}

func watchPorts(e *env) *portWatch {
	w := &portWatch{arrived: map[string]time.Time{}, expected: map[string]time.Time{}}
	e.nb.Cache().AddEventHandler(&cache.EventHandlerFuncs{AddFunc: func(table string, m model.Model) {
		if table != nbdb.LogicalSwitchPortTable {
			return
		}
		lsp := m.(*nbdb.LogicalSwitchPort)
		if !strings.HasPrefix(lsp.Name, "bench_") {
			return
		}
		w.mu.Lock()
		w.arrived[lsp.Name] = time.Now()
		w.mu.Unlock()
		w.n.Add(1)
	}})
	return w
}

func (w *portWatch) count() int { return int(w.n.Load()) }

func (w *portWatch) expect(name string, t time.Time) {
	w.mu.Lock()
	w.expected[name] = t
	w.mu.Unlock()
}

func (w *portWatch) latencies() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for name, t0 := range w.expected {
		if t1, ok := w.arrived[name]; ok {
			out = append(out, max(t1.Sub(t0), 0))
		}
	}
	slices.Sort(out)
	return out
}

func percentile(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return -1
	}
	i := min(len(d)*p/100, len(d)-1)
	return float64(d[i].Microseconds()) / 1000
}

func (e *env) createPodErr(ns, name, node string) error {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "kovn.io/test"}}},
	}
	_, err := e.kube.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	return err
}

func parallel(n, workers int, f func(int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				for f(i) != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
}

func startControllerProcess(b *testing.B, e *env, bin string, args ...string) int {
	kc := filepath.Join(b.TempDir(), "kubeconfig")
	cfg := e.restConfig
	kubeconfig := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster: {server: %s, certificate-authority: %s}\nusers:\n- name: a\n  user: {token: %s}\ncontexts:\n- name: k\n  context: {cluster: k, user: a}\ncurrent-context: k\n",
		cfg.Host, cfg.TLSClientConfig.CAFile, cfg.BearerToken)
	if err := os.WriteFile(kc, []byte(kubeconfig), 0o600); err != nil {
		b.Fatal(err)
	}
	// KOVN_BENCH_ARGS adds controller flags, e.g. --pprof to take a profile of a benchmark run.
	args = append(args, strings.Fields(os.Getenv("KOVN_BENCH_ARGS"))...)
	var logs bytes.Buffer
	cmd := exec.Command(bin, append([]string{"controller", "--kubeconfig=" + kc, "--nb-address=" + e.ovn.NBRemote,
		"--leader-elect=false", "--kube-api-qps=1000", "--log-level=warn"}, args...)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if b.Failed() {
			b.Log(logs.String())
		}
	})
	return cmd.Process.Pid
}

// countTxns counts committed transactions in a standalone OVSDB file: one header line and one JSON line each.
func countTxns(b *testing.B, path string) int {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "OVSDB JSON ") {
			n++
		}
	}
	return n
}

// peakRSS returns a process's peak resident set (VmHWM) in KiB.
func peakRSS(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	return 0
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
