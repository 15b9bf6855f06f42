// Package kubecp runs a real Kubernetes control plane on this machine from binaries built by `make kube-tools`:
// etcd and kube-apiserver on 127.0.0.1 (and kube-controller-manager when asked), with a service-account key
// pair, an admin bearer token and a kubeconfig, all under one directory. Integration tests and the sandbox use
// it; nothing here is a fake.
package kubecp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// Options says where the binaries are and where the control plane keeps its state.
type Options struct {
	// BinDir holds etcd and kube-apiserver (and kube-controller-manager). Default: $KOVN_KUBE_BIN.
	BinDir string
	// Dir holds data, certificates, logs and the kubeconfig.
	Dir string
	// ServiceCIDR is the apiserver's --service-cluster-ip-range.
	ServiceCIDR string
	// ControllerManager also starts kube-controller-manager (ServiceAccounts, EndpointSlices, namespace deletion).
	ControllerManager bool
	// DieWithParent kills the processes when the process that started them dies (for tests).
	DieWithParent bool
	// AdvertiseAddress is the address nodes reach the apiserver at (default 127.0.0.1); the apiserver then
	// listens on all addresses, and its serving certificate names this one.
	AdvertiseAddress string
	// Scheduler also starts kube-scheduler.
	Scheduler bool
}

// ControlPlane is a running etcd + kube-apiserver.
type ControlPlane struct {
	opts       Options
	URL        string
	Port       int
	Token      string
	Kubeconfig string
	CAFile     string
	procs      []*exec.Cmd
}

// Start starts etcd and kube-apiserver and waits until the apiserver is ready.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	if opts.BinDir == "" {
		opts.BinDir = os.Getenv("KOVN_KUBE_BIN")
	}
	if opts.BinDir == "" {
		return nil, fmt.Errorf("kube binaries: set KOVN_KUBE_BIN or run `make kube-tools`")
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.96.0.0/16"
	}
	for _, d := range []string{"etcd", "certs"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	cp := &ControlPlane{opts: opts}
	if err := cp.start(ctx); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) start(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := cp.run("etcd", "etcd",
		"--name=default", "--data-dir="+filepath.Join(cp.opts.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync",
	); err != nil {
		return err
	}
	if err := waitHTTP(ctx, etcdURL+"/health", "", nil, 30*time.Second); err != nil {
		return fmt.Errorf("etcd not healthy: %w\n%s", err, cp.logTail("etcd"))
	}
	if err := cp.writeCredentials(); err != nil {
		return err
	}
	cp.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	cp.Port = ports[2]
	d := cp.opts.Dir
	bind, adv := "127.0.0.1", "127.0.0.1"
	if cp.opts.AdvertiseAddress != "" {
		bind, adv = "0.0.0.0", cp.opts.AdvertiseAddress
	}
	if err := cp.run("kube-apiserver", "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address="+bind, "--advertise-address="+adv, "--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+filepath.Join(d, "certs"),
		"--service-account-key-file="+filepath.Join(d, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(d, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--token-auth-file="+filepath.Join(d, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range="+cp.opts.ServiceCIDR,
		"--endpoint-reconciler-type=none",
	); err != nil {
		return err
	}
	insecure := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if err := waitHTTP(ctx, cp.URL+"/readyz", cp.Token, insecure, 60*time.Second); err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w\n%s", err, cp.logTail("kube-apiserver"))
	}
	if err := cp.writeKubeconfig(); err != nil {
		return err
	}
	if cp.opts.ControllerManager {
		if err := cp.run("kube-controller-manager", "kube-controller-manager",
			"--kubeconfig="+cp.Kubeconfig, "--leader-elect=false", "--secure-port=0",
			"--service-account-private-key-file="+filepath.Join(d, "sa.key"), "--root-ca-file="+cp.CAFile,
			"--controllers=*,-node-lifecycle-controller",
		); err != nil {
			return err
		}
	}
	if cp.opts.Scheduler {
		if err := cp.run("kube-scheduler", "kube-scheduler",
			"--kubeconfig="+cp.Kubeconfig, "--leader-elect=false", "--secure-port=0",
		); err != nil {
			return err
		}
	}
	return nil
}

// RESTConfig returns a client config for the admin user.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.URL,
		BearerToken:     cp.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.CAFile},
		QPS:             1000,
		Burst:           2000,
	}
}

// PIDs returns the control plane's process IDs by name.
func (cp *ControlPlane) PIDs() map[string]int {
	out := map[string]int{}
	for _, p := range cp.procs {
		out[filepath.Base(p.Path)] = p.Process.Pid
	}
	return out
}

// Release lets the processes outlive this one (the sandbox stops them later by PID).
func (cp *ControlPlane) Release() {
	for _, p := range cp.procs {
		_ = p.Process.Release()
	}
	cp.procs = nil
}

// Stop stops every process, newest first (SIGTERM, then SIGKILL after 5 s).
func (cp *ControlPlane) Stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		p := cp.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = p.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	cp.procs = nil
}

func (cp *ControlPlane) run(name, bin string, args ...string) error {
	path := filepath.Join(cp.opts.BinDir, bin)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: %w (build it with `make kube-tools`)", name, err)
	}
	log, err := os.Create(filepath.Join(cp.opts.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cp.opts.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	log.Close()
	cp.procs = append(cp.procs, cmd)
	return nil
}

func (cp *ControlPlane) logTail(name string) string {
	data, _ := os.ReadFile(filepath.Join(cp.opts.Dir, name+".log"))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// writeCredentials creates the service-account key pair and the admin token.
func (cp *ControlPlane) writeCredentials() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	d := cp.opts.Dir
	if err := os.WriteFile(filepath.Join(d, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return err
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	cp.Token = hex.EncodeToString(tok)
	return os.WriteFile(filepath.Join(d, "tokens.csv"), []byte(cp.Token+",admin,admin-uid,system:masters\n"), 0o600)
}

// writeKubeconfig extracts the apiserver's self-signed CA (the second certificate of apiserver.crt) and writes
// an admin kubeconfig.
func (cp *ControlPlane) writeKubeconfig() error {
	d := cp.opts.Dir
	data, err := os.ReadFile(filepath.Join(d, "certs", "apiserver.crt"))
	if err != nil {
		return err
	}
	var blocks [][]byte
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, pem.EncodeToMemory(b))
	}
	if len(blocks) < 2 {
		return fmt.Errorf("apiserver.crt: want the serving cert and its CA, found %d certificates", len(blocks))
	}
	cp.CAFile = filepath.Join(d, "ca.crt")
	if err := os.WriteFile(cp.CAFile, blocks[1], 0o644); err != nil {
		return err
	}
	cp.Kubeconfig = filepath.Join(d, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kovn
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kovn
  context: {cluster: kovn, user: admin}
current-context: kovn
`, cp.URL, cp.CAFile, cp.Token)
	return os.WriteFile(cp.Kubeconfig, []byte(kc), 0o600)
}

// KubeconfigFor writes a kubeconfig reaching the apiserver at host (an address of this machine other nodes see).
func (cp *ControlPlane) KubeconfigFor(path, host string) error {
	data, err := os.ReadFile(cp.Kubeconfig)
	if err != nil {
		return err
	}
	kc := strings.Replace(string(data), cp.URL, "https://"+net.JoinHostPort(host, strconv.Itoa(cp.Port)), 1)
	return os.WriteFile(path, []byte(kc), 0o600)
}

func waitHTTP(ctx context.Context, url, token string, tr http.RoundTripper, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
