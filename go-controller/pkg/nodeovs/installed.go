package nodeovs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"

	"github.com/kovn-io/kovn/ovsdb-models/vswitchd"
)

// InstallWatcher waits for ovn-controller to mark interfaces ovn-installed. It listens to the OVSDB monitor's
// updates of the Interface table: no polling.
type InstallWatcher struct {
	c       client.Client
	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

// NewInstallWatcher registers a watcher on the client's cache.
func NewInstallWatcher(c client.Client) *InstallWatcher {
	w := &InstallWatcher{c: c, waiters: map[string][]chan struct{}{}}
	c.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    func(table string, m model.Model) { w.seen(table, m) },
		UpdateFunc: func(table string, _, m model.Model) { w.seen(table, m) },
	})
	return w
}

func (w *InstallWatcher) seen(table string, m model.Model) {
	if table != vswitchd.InterfaceTable {
		return
	}
	iface := m.(*vswitchd.Interface)
	if iface.ExternalIDs[KeyOVNInstalled] != "true" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.waiters[iface.Name] {
		close(ch)
	}
	delete(w.waiters, iface.Name)
}

// Wait returns once the interface is ovn-installed, or an error when ctx ends first.
func (w *InstallWatcher) Wait(ctx context.Context, name string) error {
	ch := make(chan struct{})
	w.mu.Lock()
	w.waiters[name] = append(w.waiters[name], ch)
	w.mu.Unlock()
	// It may have been installed before we registered.
	if iface, _ := Interface(w.c, name); iface != nil && iface.ExternalIDs[KeyOVNInstalled] == "true" {
		w.drop(name, ch)
		return nil
	}
	start := time.Now()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		w.drop(name, ch)
		return fmt.Errorf("ovn-controller did not install port %s within %s: %w", name, time.Since(start).Round(time.Millisecond), ctx.Err())
	}
}

func (w *InstallWatcher) drop(name string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.waiters[name]
	for i, c := range list {
		if c == ch {
			w.waiters[name] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(w.waiters[name]) == 0 {
		delete(w.waiters, name)
	}
}
