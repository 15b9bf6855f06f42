package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/namedns"
)

// NetnsPrefix names pod namespaces ("kovnsb-p-<uid prefix>"), under the sandbox's prefix so `down` finds them.
const NetnsPrefix = "kovnsb-p-"

// start creates the pod's namespace, runs CNI ADD, starts the workload and reports the pod Running.
func (k *Kubelet) start(ctx context.Context, pod *corev1.Pod) error {
	key := pod.Namespace + "/" + pod.Name
	uid := string(pod.UID)
	r := &running{UID: uid, ContainerID: sandboxID(uid), Netns: "/var/run/netns/" + NetnsPrefix + strings.ReplaceAll(uid, "-", "")[:16]}
	if err := namedns.Create(filepath.Base(r.Netns)); err != nil {
		return err
	}
	list, err := k.confList()
	if err != nil {
		return fmt.Errorf("CNI config not installed yet: %w", err)
	}
	start := time.Now()
	res, err := k.cni.AddNetworkList(ctx, list, k.runtimeConf(pod, r))
	if err != nil {
		_ = k.cni.DelNetworkList(ctx, list, k.runtimeConf(pod, r))
		return fmt.Errorf("CNI ADD: %w", err)
	}
	result, err := current.NewResultFromResult(res)
	if err != nil || len(result.IPs) == 0 {
		return fmt.Errorf("CNI ADD returned no IP: %v", err)
	}
	r.IP = result.IPs[0].Address.IP.String()
	k.log.Info("pod network up", "pod", key, "ip", r.IP, "took", time.Since(start).Round(time.Millisecond))
	if r.PID, err = k.startWorkload(pod, r); err != nil {
		return err
	}
	waitListening(r.Netns, pod)
	k.mu.Lock()
	k.pods[key] = r
	k.mu.Unlock()
	k.save()
	return k.setRunning(ctx, pod, r.IP)
}

// startWorkload runs `kovn sandbox workload` inside the pod's namespace, listening on the declared ports.
func (k *Kubelet) startWorkload(pod *corev1.Pod, r *running) (int, error) {
	var tcp, udp []string
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			switch p.Protocol {
			case corev1.ProtocolUDP:
				udp = append(udp, strconv.Itoa(int(p.ContainerPort)))
			case corev1.ProtocolSCTP:
				// No SCTP in the workload: the port stays closed.
			default:
				tcp = append(tcp, strconv.Itoa(int(p.ContainerPort)))
			}
		}
	}
	name := r.Netns[strings.LastIndex(r.Netns, "/")+1:]
	log, err := os.OpenFile(k.cfg.Dir+"/pod-"+pod.Namespace+"_"+pod.Name+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	cmd := exec.Command("ip", "netns", "exec", name, k.cfg.Kovn, "sandbox", "workload",
		"--name="+pod.Namespace+"/"+pod.Name, "--tcp="+strings.Join(tcp, ","), "--udp="+strings.Join(udp, ","))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start workload: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

// stop kills the workload, runs CNI DEL and removes the namespace.
func (k *Kubelet) stop(ctx context.Context, key string, r *running) error {
	if r.PID > 0 {
		_ = syscall.Kill(-r.PID, syscall.SIGKILL)
	}
	list, err := k.confList()
	if err != nil {
		return err
	}
	ns, name, _ := strings.Cut(key, "/")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: typesUID(r.UID)}}
	if err := k.cni.DelNetworkList(ctx, list, k.runtimeConf(pod, r)); err != nil {
		return fmt.Errorf("CNI DEL: %w", err)
	}
	_ = namedns.Delete(filepath.Base(r.Netns))
	k.mu.Lock()
	delete(k.pods, key)
	k.mu.Unlock()
	k.save()
	k.log.Info("pod stopped", "pod", key)
	return nil
}

// setRunning reports the pod Running and Ready with its IP, re-reading the pod when it changed meanwhile.
func (k *Kubelet) setRunning(ctx context.Context, pod *corev1.Pod, ip string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		err := k.updateRunning(ctx, pod, ip)
		if apierrors.IsConflict(err) {
			if fresh, gerr := k.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{}); gerr == nil {
				pod = fresh
			}
		}
		return err
	})
}

func (k *Kubelet) updateRunning(ctx context.Context, pod *corev1.Pod, ip string) error {
	p := pod.DeepCopy()
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.HostIP, p.Status.PodIP = k.cfg.NodeIP, ip
	p.Status.HostIPs = []corev1.HostIP{{IP: k.cfg.NodeIP}}
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if p.Status.StartTime == nil {
		p.Status.StartTime = &now
	}
	p.Status.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "kovn.io/sandbox-workload", Ready: true, Started: new(bool),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: *p.Status.StartTime}}})
	}
	_, err := k.kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

// save writes the pod records for `kovn sandbox exec/probe` and the e2e suite, which read them at any moment: to a
// temporary file renamed over the old one, so a reader never sees a half-written file, and one save at a time,
// so an older snapshot never lands after a newer one.
func (k *Kubelet) save() {
	k.saveMu.Lock()
	defer k.saveMu.Unlock()
	k.mu.Lock()
	data, _ := json.MarshalIndent(k.pods, "", "  ")
	k.mu.Unlock()
	tmp := k.statePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err == nil {
		_ = os.Rename(tmp, k.statePath())
	}
}

func (k *Kubelet) load() {
	data, err := os.ReadFile(k.statePath())
	if err == nil {
		_ = json.Unmarshal(data, &k.pods)
	}
}

// waitListening waits (up to 10 s) until the workload accepts connections on the pod's first TCP port, so the
// pod is reported Running only once it serves, as a readiness probe would.
func waitListening(netnsPath string, pod *corev1.Pod) {
	port := 0
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if port == 0 && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
				port = int(p.ContainerPort)
			}
		}
	}
	if port == 0 {
		return
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ok := false
		_ = ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
			conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				conn.Close()
				ok = true
			}
			return nil
		})
		if ok {
			return
		}
	}
}
