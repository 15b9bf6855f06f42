// Package ovndb connects kovn to the OVSDB databases it uses (OVN Northbound, OVN Southbound and the local
// Open_vSwitch database) through libovsdb. It owns the client database models, including the client-side
// indexes that let kovn find its own rows by owner, and the connection and monitor setup.
package ovndb

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-logr/logr"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"

	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
	"github.com/kovn-io/kovn/ovsdb-models/sbdb"
	"github.com/kovn-io/kovn/ovsdb-models/vswitchd"
)

// Config says where a database is and how to talk to it.
type Config struct {
	// Address is an OVSDB remote: "unix:/path/to/db.sock" or "tcp:10.0.0.1:6641".
	// Several comma-separated remotes may be given; the client fails over between them.
	Address string
	// ConnectTimeout bounds the first connection and the initial monitor dump.
	ConnectTimeout time.Duration
	// Reconnect makes the client reconnect in the background after the connection drops;
	// transactions issued meanwhile block until the connection is back or their context ends.
	Reconnect bool
	// Logger receives libovsdb's logs; nil discards them.
	Logger *slog.Logger
}

// NBModel is the Northbound client model with kovn's client indexes.
func NBModel() (model.ClientDBModel, error) {
	m, err := nbdb.FullDatabaseModel()
	if err != nil {
		return model.ClientDBModel{}, fmt.Errorf("nb model: %w", err)
	}
	// Every table with external_ids gets the ownership index: kovn may own rows in any of them.
	indexes := map[string][]model.ClientIndex{}
	for table, ts := range nbdb.Schema().Tables {
		if ts.Column("external_ids") != nil {
			indexes[table] = []model.ClientIndex{ownership.ClientIndex()}
		}
	}
	// Logical_Switch, Logical_Router and Load_Balancer have no schema index on name, but kovn names
	// them uniquely and looks them up by name.
	for _, table := range []string{nbdb.LogicalSwitchTable, nbdb.LogicalRouterTable, nbdb.LoadBalancerTable} {
		indexes[table] = append([]model.ClientIndex{{Columns: []model.ColumnKey{{Column: "name"}}}}, indexes[table]...)
	}
	m.SetIndexes(indexes)
	return m, nil
}

// ConnectNB connects to the OVN Northbound database and monitors all of it.
func ConnectNB(ctx context.Context, cfg Config) (client.Client, error) {
	m, err := NBModel()
	if err != nil {
		return nil, err
	}
	return connect(ctx, "OVN_Northbound", m, cfg)
}

// ConnectSB connects to the OVN Southbound database and monitors all of it.
func ConnectSB(ctx context.Context, cfg Config) (client.Client, error) {
	m, err := sbdb.FullDatabaseModel()
	if err != nil {
		return nil, fmt.Errorf("sb model: %w", err)
	}
	return connect(ctx, "OVN_Southbound", m, cfg)
}

// ConnectOVS connects to a local Open_vSwitch database and monitors all of it.
func ConnectOVS(ctx context.Context, cfg Config) (client.Client, error) {
	m, err := vswitchd.FullDatabaseModel()
	if err != nil {
		return nil, fmt.Errorf("ovs model: %w", err)
	}
	return connect(ctx, "Open_vSwitch", m, cfg)
}

func connect(ctx context.Context, name string, m model.ClientDBModel, cfg Config) (client.Client, error) {
	if cfg.Address == "" {
		return nil, fmt.Errorf("connect %s: no address given", name)
	}
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	log := logr.Discard()
	if cfg.Logger != nil {
		log = logr.FromSlogHandler(cfg.Logger.With("db", name).Handler())
	}
	opts := []client.Option{client.WithLogger(&log)}
	for _, ep := range strings.Split(cfg.Address, ",") {
		opts = append(opts, client.WithEndpoint(strings.TrimSpace(ep)))
	}
	if cfg.Reconnect {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = 100 * time.Millisecond
		b.MaxInterval = 5 * time.Second
		b.MaxElapsedTime = 0
		opts = append(opts, client.WithReconnect(timeout, b))
	}
	c, err := client.NewOVSDBClient(m, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s at %s: %w", name, cfg.Address, err)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.Connect(cctx); err != nil {
		return nil, fmt.Errorf("connect %s at %s: %w", name, cfg.Address, err)
	}
	if _, err := c.MonitorAll(cctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("monitor %s at %s: %w", name, cfg.Address, err)
	}
	return c, nil
}
