# kovn's build, test and sandbox entry points. `make test` and `make sandbox` install what they need
# (Debian packages through apt, Kubernetes binaries built once from the Go module proxy and cached in .cache/).

SHELL       := /bin/bash
GO          ?= go
OUT         := _output/bin
KUBE_VERSION := v1.37.2
KUBE_MINOR  := $(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_BIN    := $(CURDIR)/.cache/kube/$(KUBE_VERSION)/bin
KUBE_TOOLS  := kube-apiserver kube-controller-manager kube-scheduler kubectl etcd
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X github.com/kovn-io/kovn/go-controller/pkg/version.version=$(VERSION) \
               -X github.com/kovn-io/kovn/go-controller/pkg/version.commit=$(shell git rev-parse HEAD 2>/dev/null)
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(KUBE_MINOR) \
  -X k8s.io/component-base/version.gitTreeState=clean \
  -X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION) \
  -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$(KUBE_MINOR)
DEB_PACKAGES := openvswitch-switch ovn-central ovn-host iproute2 ethtool iputils-ping

export KOVN_KUBE_BIN := $(KUBE_BIN)

.PHONY: all build test unit bench models deps kube-tools sandbox vet fmt clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(OUT)/kovn ./go-controller/cmd/kovn
	$(GO) build -ldflags "$(LDFLAGS)" -o $(OUT)/kovn-cni ./cni

## deps: install the Debian packages kovn runs with (OVS, OVN, iproute2), when missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

## kube-tools: build kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd once into .cache/.
kube-tools: $(addprefix $(KUBE_BIN)/,$(KUBE_TOOLS))

$(KUBE_BIN)/etcd: test/tools/etcd/go.mod test/tools/etcd/main.go
	cd test/tools/etcd && $(GO) build -o $(KUBE_BIN)/etcd .

$(KUBE_BIN)/kube-%: test/tools/go.mod
	cd test/tools && $(GO) build -ldflags "$(KUBE_LDFLAGS)" -o $(KUBE_BIN)/kube-$* k8s.io/kubernetes/cmd/kube-$*

$(KUBE_BIN)/kubectl: test/tools/go.mod
	cd test/tools && $(GO) build -ldflags "$(KUBE_LDFLAGS)" -o $(KUBE_BIN)/kubectl k8s.io/kubernetes/cmd/kubectl

models:
	$(GO) generate ./ovsdb-models/

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

## test: everything CI runs: vet, unit tests, real-OVSDB and real-apiserver integration tests, and the
## end-to-end suite on a 3-node sandbox built from this tree.
test: deps kube-tools build vet
	KOVN_BIN=$(CURDIR)/$(OUT)/kovn $(GO) test -count=1 -timeout 30m ./...

## unit: tests that need neither root-installed packages nor the kube binaries.
unit:
	$(GO) test -count=1 -short ./...

## bench: the benchmarks whose figures we report: test bed start-up, NB write throughput, and the controller's
## cold sync (100 nodes, 10,000 pods) and steady-state pod latency (50 pods/s) with the real binary, and CNI
## ADD latency through libcni with real OVN.
bench: deps kube-tools build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./go-controller/pkg/ovntest/ ./go-controller/pkg/nbops/ ./go-controller/pkg/ipam/
	KOVN_BIN=$(CURDIR)/$(OUT)/kovn $(GO) test -run '^$$' -bench ControllerScale -benchtime 1x -timeout 30m ./go-controller/pkg/controller/
	KOVN_BIN=$(CURDIR)/$(OUT)/kovn $(GO) test -run '^$$' -bench ServiceScale -benchtime 1x -timeout 30m ./go-controller/pkg/controller/
	KOVN_BIN=$(CURDIR)/$(OUT)/kovn $(GO) test -run '^$$' -bench PolicyScale -benchtime 1x -timeout 30m ./go-controller/pkg/controller/
	$(GO) test -run '^$$' -bench CNIAdd -benchtime 1x -timeout 10m ./go-controller/pkg/nodeagent/

## sandbox: a 3-node cluster on this machine, and a short demo (two pods on different nodes talking).
SANDBOX_DIR ?= /tmp/kovn-sandbox
sandbox: deps kube-tools build
	$(OUT)/kovn sandbox up --nodes 3 --state-dir $(SANDBOX_DIR)
	@SANDBOX_DIR=$(SANDBOX_DIR) KUBECTL=$(KUBE_BIN)/kubectl KOVN=$(OUT)/kovn bash hack/sandbox-demo.sh

clean:
	rm -rf _output
