// Package kubelet is the sandbox's stand-in for kubelet + containerd, for networking: it registers its Node
// (addresses, capacity, Ready once the CNI plugin answers STATUS), and for every pod bound to the node it creates
// a network namespace, calls the installed CNI conflist through libcni (ADD on start, CHECK periodically, DEL on
// deletion) exactly as containerd does, runs the built-in workload in the namespace, and keeps the pod's status
// true (phase, podIP/podIPs, conditions).
package kubelet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Config is what the kubelet stand-in needs.
type Config struct {
	NodeName string
	NodeIP   string
	Kube     kubernetes.Interface
	// Dir is the node's directory: net.d (CNI config), bin (plugins), kubelet state.
	Dir string
	// Kovn is the kovn binary (it runs `kovn sandbox workload` in each pod).
	Kovn   string
	Logger *slog.Logger
}

// Kubelet runs the pods of one node.
type Kubelet struct {
	cfg  Config
	log  *slog.Logger
	kube kubernetes.Interface
	cni  *libcni.CNIConfig
	q    workqueue.TypedRateLimitingInterface[string]
	inf  cache.SharedIndexInformer

	mu     sync.Mutex
	pods   map[string]*running // by namespace/name
	saveMu sync.Mutex          // one save of pods at a time
}

// running is a pod this kubelet has started.
type running struct {
	UID         string `json:"uid"`
	ContainerID string `json:"containerID"`
	Netns       string `json:"netns"`
	PID         int    `json:"pid"`
	IP          string `json:"ip"`
}

// Run registers the node and runs pods until ctx ends. Pods keep running when it stops.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	k := &Kubelet{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName), kube: cfg.Kube,
		cni:  libcni.NewCNIConfigWithCacheDir([]string{filepath.Join(cfg.Dir, "bin")}, filepath.Join(cfg.Dir, "cni-cache"), nil),
		q:    workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second)),
		pods: map[string]*running{}}
	k.load()
	if err := k.registerNode(ctx); err != nil {
		return err
	}
	f := informers.NewSharedInformerFactoryWithOptions(cfg.Kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	k.inf = f.Core().V1().Pods().Informer()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			k.q.Add(key)
		}
	}
	_, _ = k.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue})
	f.Start(ctx.Done())
	defer f.Shutdown()
	cache.WaitForCacheSync(ctx.Done(), k.inf.HasSynced)
	k.mu.Lock()
	for key := range k.pods { // pods deleted while the kubelet was away
		k.q.Add(key)
	}
	k.mu.Unlock()
	for range 4 {
		go func() {
			for k.next(ctx) {
			}
		}()
	}
	go k.heartbeat(ctx)
	go k.checkLoop(ctx)
	<-ctx.Done()
	k.q.ShutDown()
	return nil
}

func (k *Kubelet) next(ctx context.Context) bool {
	key, quit := k.q.Get()
	if quit {
		return false
	}
	defer k.q.Done(key)
	if err := k.sync(ctx, key); err != nil {
		k.log.Warn("pod sync failed; will retry", "pod", key, "err", err)
		k.q.AddRateLimited(key)
		return true
	}
	k.q.Forget(key)
	return true
}

// sync starts a pod that should run here, or stops one that should not.
func (k *Kubelet) sync(ctx context.Context, key string) error {
	obj, exists, err := k.inf.GetStore().GetByKey(key)
	if err != nil {
		return err
	}
	k.mu.Lock()
	r := k.pods[key]
	k.mu.Unlock()
	var pod *corev1.Pod
	if exists {
		pod = obj.(*corev1.Pod)
	}
	switch {
	case pod == nil || pod.DeletionTimestamp != nil || (r != nil && r.UID != string(pod.UID)):
		if r != nil {
			if err := k.stop(ctx, key, r); err != nil {
				return err
			}
		}
		if pod != nil && pod.DeletionTimestamp != nil {
			// The kubelet confirms the deletion once the pod is torn down.
			uid := pod.UID
			err := k.kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
				GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !isNotFoundOrConflict(err) {
				return err
			}
		} else if pod != nil {
			return k.start(ctx, pod)
		}
		return nil
	case pod.Spec.HostNetwork:
		if pod.Status.Phase != corev1.PodRunning {
			return k.setRunning(ctx, pod, k.cfg.NodeIP)
		}
		return nil
	case r == nil:
		return k.start(ctx, pod)
	case pod.Status.PodIP != r.IP || pod.Status.Phase != corev1.PodRunning:
		return k.setRunning(ctx, pod, r.IP)
	}
	return nil
}

// sandboxID is the pod's container (sandbox) ID: stable per pod UID, 64 hex characters like containerd's.
func sandboxID(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return hex.EncodeToString(sum[:])
}

func (k *Kubelet) statePath() string { return filepath.Join(k.cfg.Dir, "kubelet-pods.json") }

func (k *Kubelet) runtimeConf(pod *corev1.Pod, r *running) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: r.ContainerID, NetNS: r.Netns, IfName: "eth0", Args: [][2]string{
		{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", pod.Namespace}, {"K8S_POD_NAME", pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", r.ContainerID}, {"K8S_POD_UID", string(pod.UID)}}}
}

// confList reads the CNI configuration the node agent installed.
func (k *Kubelet) confList() (*libcni.NetworkConfigList, error) {
	return libcni.LoadNetworkConf(filepath.Join(k.cfg.Dir, "net.d"), "kovn")
}

func isNotFoundOrConflict(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsConflict(err)
}
