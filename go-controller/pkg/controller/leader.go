package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection says which Lease the replicas compete for.
type LeaderElection struct {
	Namespace     string
	Name          string
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// RunAsLeader runs run only while this replica holds the Lease, so that of several replicas exactly one writes
// NB. It returns when ctx ends or leadership is lost (the caller exits, and restarts as a follower).
func RunAsLeader(ctx context.Context, kube kubernetes.Interface, le LeaderElection, log *slog.Logger, run func(context.Context)) error {
	if le.LeaseDuration == 0 {
		le.LeaseDuration, le.RenewDeadline, le.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	// When run returns (its context ended, or it failed) the replica gives up the Lease and returns.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan struct{})
	finished := make(chan struct{}) // closed when run returns
	var started atomic.Bool
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("became leader", "identity", le.Identity, "lease", le.Namespace+"/"+le.Name)
				started.Store(true)
				defer close(finished)
				run(ctx)
				cancel()
			},
			OnStoppedLeading: func() {
				log.Info("stopped leading", "identity", le.Identity)
				close(lost)
			},
			OnNewLeader: func(id string) {
				if id != le.Identity {
					log.Info("following", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	elector.Run(ctx)
	// The elector does not wait for the leader's work: do, so that this replica has stopped writing before
	// its caller exits and another takes over.
	if started.Load() {
		<-finished
	}
	select {
	case <-lost:
		if ctx.Err() == nil {
			return fmt.Errorf("leader election: lost the lease %s/%s", le.Namespace, le.Name)
		}
	default:
	}
	return nil
}
