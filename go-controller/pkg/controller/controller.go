// Package controller is kovn's central controller: it watches Nodes, Namespaces and Pods and keeps the OVN
// Northbound database equal to the network they describe. Event handlers only enqueue keys; a worker per queue
// computes the desired rows of one key from the listers (package topology) and applies the difference in one NB
// transaction (package nbops). At start a full sync rebuilds IPAM from annotations and NB and removes every
// kovn-owned row whose owner is gone, so a restart converges, and a restart with nothing changed writes nothing.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/ipam"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
)

// Config is everything the controller needs; nothing is read from globals.
type Config struct {
	Cluster config.Cluster
	NB      client.Client
	Kube    kubernetes.Interface
	// Recorder records Warning Events on objects kovn cannot serve.
	Recorder record.EventRecorder
	// PodWorkers is the number of pods reconciled in parallel (default 8); ServiceWorkers the same for
	// services (default 4).
	PodWorkers, ServiceWorkers int
	Logger                     *slog.Logger
	// ACLLogRate limits ACL log messages of namespaces that turn policy logging on, per second (default 20).
	ACLLogRate int
	// Metrics registers the controller's metrics (nil: not exported).
	Metrics prometheus.Registerer
}

// Controller reconciles Nodes, Namespaces and Pods into the Northbound database.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	nb   client.Client
	kube kubernetes.Interface

	factory    informers.SharedInformerFactory
	nodes      corelisters.NodeLister
	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	services   corelisters.ServiceLister
	slices     discoverylisters.EndpointSliceLister
	policies   networkinglisters.NetworkPolicyLister
	podsSynced []cache.InformerSynced

	nodeQ, podQ, nsQ, svcQ, npQ, peerQ workqueue.TypedRateLimitingInterface[string]
	svcLBs                             serviceLBIndex
	peers                              *peerRegistry

	subnets *ipam.SubnetAllocator
	poolsMu sync.Mutex
	pools   map[string]*ipam.Pool // by node name

	// ownWrites holds the pod network annotation each pod was last patched with, to recognise its echo.
	ownWrites sync.Map
	stats     Stats
	metrics   *metrics
	synced    atomic.Bool  // the full sync is done
	inflight  atomic.Int64 // keys being reconciled
}

// Stats counts what the controller did, for tests, benchmarks and metrics.
type Stats struct {
	Transactions atomic.Int64 // NB transactions committed
	Operations   atomic.Int64 // operations in them
	Failures     atomic.Int64 // transactions refused or failed
}

// New builds a controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Cluster.Validate(); err != nil {
		return nil, err
	}
	if cfg.NB == nil || cfg.Kube == nil || cfg.Recorder == nil {
		return nil, fmt.Errorf("controller: NB client, Kubernetes client and event recorder are required")
	}
	if cfg.PodWorkers <= 0 {
		cfg.PodWorkers = 8
	}
	if cfg.ServiceWorkers <= 0 {
		cfg.ServiceWorkers = 4
	}
	if cfg.ACLLogRate <= 0 {
		cfg.ACLLogRate = 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Controller{
		cfg: cfg, log: cfg.Logger, nb: cfg.NB, kube: cfg.Kube,
		subnets: ipam.NewSubnetAllocator(cfg.Cluster.ClusterCIDRs),
		pools:   map[string]*ipam.Pool{},
	}
	c.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Kube, 0,
		informers.WithTransform(dropManagedFields))
	newQ := func(name string) workqueue.TypedRateLimitingInterface[string] {
		return workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 2*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name})
	}
	c.nodeQ, c.podQ, c.nsQ, c.svcQ = newQ("nodes"), newQ("pods"), newQ("namespaces"), newQ("services")
	c.svcLBs = serviceLBIndex{m: map[string]map[string]bool{}}
	c.npQ, c.peerQ = newQ("networkpolicies"), newQ("peers")
	c.peers = newPeerRegistry()
	c.metrics = newMetrics(cfg.Metrics, c)

	nodeInf := c.factory.Core().V1().Nodes()
	podInf := c.factory.Core().V1().Pods()
	nsInf := c.factory.Core().V1().Namespaces()
	svcInf := c.factory.Core().V1().Services()
	sliceInf := c.factory.Discovery().V1().EndpointSlices()
	c.nodes, c.pods, c.namespaces = nodeInf.Lister(), podInf.Lister(), nsInf.Lister()
	c.services, c.slices = svcInf.Lister(), sliceInf.Lister()
	npInf := c.factory.Networking().V1().NetworkPolicies()
	c.policies = npInf.Lister()
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		nodeInf.Informer():  enqueueHandler(c.nodeQ, nodeChanged),
		podInf.Informer():   enqueueHandler(c.podQ, c.podChanged),
		nsInf.Informer():    enqueueHandler(c.nsQ, nil),
		svcInf.Informer():   enqueueHandler(c.svcQ, nil),
		sliceInf.Informer(): sliceHandler(c.svcQ),
		npInf.Informer():    enqueueHandler(c.npQ, nil),
	} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("add event handler: %w", err)
		}
		c.podsSynced = append(c.podsSynced, inf.HasSynced)
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: c.serviceAdded,
		UpdateFunc: c.serviceUpdated}); err != nil {
		return nil, fmt.Errorf("add event handler: %w", err)
	}
	if _, err := nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: c.namespaceAdded,
		UpdateFunc: c.namespaceChanged, DeleteFunc: c.namespaceDeleted}); err != nil {
		return nil, fmt.Errorf("add event handler: %w", err)
	}
	return c, nil
}

// Stats returns the controller's counters.
func (c *Controller) Stats() *Stats { return &c.stats }

// Idle reports whether the full sync is done and no key is queued or being reconciled. Keys waiting out a
// rate-limited retry are not counted.
func (c *Controller) Idle() bool {
	return c.synced.Load() && c.inflight.Load() == 0 &&
		c.nodeQ.Len() == 0 && c.podQ.Len() == 0 && c.nsQ.Len() == 0 && c.svcQ.Len() == 0 &&
		c.npQ.Len() == 0 && c.peerQ.Len() == 0
}

// Run starts the informers, runs the full sync, then the workers, until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer c.nodeQ.ShutDown()
	defer c.podQ.ShutDown()
	defer c.nsQ.ShutDown()
	defer c.svcQ.ShutDown()
	defer c.npQ.ShutDown()
	defer c.peerQ.ShutDown()
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.podsSynced...) {
		return fmt.Errorf("informer caches did not sync: %w", ctx.Err())
	}
	start := time.Now()
	if err := c.fullSync(ctx); err != nil {
		return fmt.Errorf("full sync: %w", err)
	}
	c.synced.Store(true)
	c.metrics.fullSync.Set(time.Since(start).Seconds())
	c.log.Info("full sync done", "duration", time.Since(start), "nbTransactions", c.stats.Transactions.Load())

	var wg sync.WaitGroup
	run := func(n int, q workqueue.TypedRateLimitingInterface[string], sync func(context.Context, string) error) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c.processNext(ctx, q, sync) {
				}
			}()
		}
	}
	run(1, c.nsQ, c.syncNamespace)
	run(2, c.nodeQ, c.syncNode)
	run(c.cfg.PodWorkers, c.podQ, c.syncPod)
	run(c.cfg.ServiceWorkers, c.svcQ, c.syncService)
	run(1, c.npQ, c.syncPolicy) // one at a time: see peerRegistry
	run(1, c.peerQ, c.syncPeer)
	<-ctx.Done()
	c.nodeQ.ShutDown()
	c.podQ.ShutDown()
	c.nsQ.ShutDown()
	c.svcQ.ShutDown()
	c.npQ.ShutDown()
	c.peerQ.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) processNext(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], sync func(context.Context, string) error) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	defer q.Done(key)
	start := time.Now()
	err := sync(ctx, key)
	result := "ok"
	if err != nil {
		result = "error"
	}
	c.metrics.reconcile.WithLabelValues(queueName(q, c), result).Observe(time.Since(start).Seconds())
	if err != nil {
		c.log.Warn("reconcile failed; will retry", "queue", queueName(q, c), "key", key, "retries", q.NumRequeues(key), "err", err)
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}

func queueName(q workqueue.TypedRateLimitingInterface[string], c *Controller) string {
	switch q {
	case c.nodeQ:
		return "node"
	case c.podQ:
		return "pod"
	case c.svcQ:
		return "service"
	case c.npQ:
		return "networkpolicy"
	case c.peerQ:
		return "peer"
	}
	return "namespace"
}

// apply commits ops as one NB transaction, counting it.
func (c *Controller) apply(ctx context.Context, what string, ops []ovsdb.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := nbops.Transact(tctx, c.nb, ops); err != nil {
		c.stats.Failures.Add(1)
		c.metrics.transactions.WithLabelValues("error").Inc()
		return fmt.Errorf("%s: %w", what, err)
	}
	c.stats.Transactions.Add(1)
	c.stats.Operations.Add(int64(len(ops)))
	c.metrics.transactions.WithLabelValues("ok").Inc()
	c.metrics.operations.Add(float64(len(ops)))
	return nil
}

// enqueueHandler enqueues the key of every added or deleted object, and of updated ones for which changed
// (when given) says something the controller reads has changed.
func enqueueHandler(q workqueue.TypedRateLimitingInterface[string], changed func(old, cur any) bool) cache.ResourceEventHandler {
	add := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			q.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: add,
		UpdateFunc: func(old, cur any) {
			if changed == nil || changed(old, cur) {
				add(cur)
			}
		},
		DeleteFunc: add,
	}
}

// podChanged reports whether an update touched what the pod reconcile reads: its node, host networking, phase
// or kovn's annotations. Status updates (conditions, IPs) are skipped, and so is the echo of the controller's own
// annotation write (the reconcile that wrote it goes on to apply NB itself, and retries if that fails).
func (c *Controller) podChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Pod)
	n, ok2 := cur.(*corev1.Pod)
	if !ok1 || !ok2 {
		return true
	}
	if o.Spec.NodeName != n.Spec.NodeName || o.Spec.HostNetwork != n.Spec.HostNetwork || o.Status.Phase != n.Status.Phase ||
		!maps.Equal(o.Labels, n.Labels) {
		return true // labels: policy and peer membership
	}
	if !kovnAnnotationsChanged(o.Annotations, n.Annotations) {
		return false
	}
	key := n.Namespace + "/" + n.Name
	if v, ok := c.ownWrites.LoadAndDelete(key); ok && v == n.Annotations[annotations.PodNetworks] &&
		o.Annotations[annotations.RequestedIP] == n.Annotations[annotations.RequestedIP] &&
		o.Annotations[annotations.RequestedMAC] == n.Annotations[annotations.RequestedMAC] {
		// The pod's IP is now in the informer: named-port matches listing pod IPs can include it.
		c.enqueueNamedPortPolicies(n)
		return false
	}
	return true
}

func nodeChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Node)
	n, ok2 := cur.(*corev1.Node)
	return !ok1 || !ok2 || kovnAnnotationsChanged(o.Annotations, n.Annotations)
}

func kovnAnnotationsChanged(a, b map[string]string) bool {
	for _, k := range []string{annotations.PodNetworks, annotations.RequestedIP, annotations.RequestedMAC, annotations.NodeSubnets,
		annotations.NodeGateway} {
		if a[k] != b[k] {
			return true
		}
	}
	return false
}

// dropManagedFields keeps the informer caches small: kovn never reads managed fields.
func dropManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// pool returns the IP pool of a node, if the node has a subnet.
func (c *Controller) pool(node string) *ipam.Pool {
	c.poolsMu.Lock()
	defer c.poolsMu.Unlock()
	return c.pools[node]
}

// setPool makes subnet the node's pool, keeping the pool (and its allocations) when the subnet is unchanged.
func (c *Controller) setPool(node string, subnet netip.Prefix) (*ipam.Pool, error) {
	c.poolsMu.Lock()
	defer c.poolsMu.Unlock()
	if p, ok := c.pools[node]; ok && p.Subnet() == subnet {
		return p, nil
	}
	p, err := ipam.NewPool(subnet)
	if err != nil {
		return nil, err
	}
	c.pools[node] = p
	return p, nil
}

func (c *Controller) dropPool(node string) {
	c.poolsMu.Lock()
	defer c.poolsMu.Unlock()
	delete(c.pools, node)
}

// warn records a Warning Event on obj and logs it.
func (c *Controller) warn(obj *corev1.ObjectReference, reason, msg string) {
	c.log.Warn(msg, "kind", obj.Kind, "namespace", obj.Namespace, "name", obj.Name, "reason", reason)
	c.cfg.Recorder.Event(obj, corev1.EventTypeWarning, reason, msg)
}
