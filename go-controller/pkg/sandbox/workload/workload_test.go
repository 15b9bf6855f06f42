package workload

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestServeAndProbe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "ns/pod", []int{18081}, []int{18082}) }()
	defer func() { cancel(); <-done }()
	for _, proto := range []string{"tcp", "udp"} {
		port := map[string]string{"tcp": "18081", "udp": "18082"}[proto]
		var r Reply
		var err error
		for i := 0; i < 50; i++ {
			if r, err = Probe(proto, "127.0.0.1:"+port, time.Second); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || r.Name != "ns/pod" || !strings.HasPrefix(r.Client, "127.0.0.1:") {
			t.Fatalf("%s: %+v %v", proto, r, err)
		}
	}
	if _, err := Probe("tcp", "127.0.0.1:18083", 200*time.Millisecond); err == nil {
		t.Fatal("probe of a closed port succeeded")
	}
}
