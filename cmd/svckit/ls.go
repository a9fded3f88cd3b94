package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/naming"
)

// instance is one row of `svckit ls`.
type instance struct {
	Service  string        `json:"service"`
	Addr     string        `json:"addr"`
	Version  string        `json:"version,omitempty"`
	Zone     string        `json:"zone,omitempty"`
	Weight   uint32        `json:"weight"`
	TTLLeft  time.Duration `json:"ttl_left_ns"`
	Instance string        `json:"instance_id,omitempty"`
}

const lsUsage = "usage: svckit ls [--etcd ADDRS] [--etcd-ca F --etcd-cert F --etcd-key F] [--prefix P] [--json] [SERVICE]"

// runLs lists the instances registered under the prefix, or of one
// service, with the etcd client settings of every svckit command.
func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := framework.DefaultConfig()
	if err := cfg.ApplyEnv(nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("svckit ls", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), lsUsage); fs.PrintDefaults() }
	cfg.RegisterEtcdFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := cli.Parse(fs, args, stdout); err != nil {
		return err
	}
	key, err := lsKey(fs, cfg.Prefix)
	if err != nil {
		return err
	}
	cc, err := cfg.EtcdClientConfig()
	if err != nil {
		return err
	}
	cc.DialTimeout, cc.Logger, cc.LogLevel = 3*time.Second, slog.New(slog.NewTextHandler(stderr, nil)), slog.LevelError
	cli, err := naming.NewClient(cc)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := naming.Ping(ctx, cli); err != nil {
		return err
	}
	resp, err := cli.Get(ctx, key, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("etcd %s: %w", strings.Join(cfg.Etcd, ","), err)
	}
	rows := lsRows(ctx, cli, cfg.Prefix, resp.Kvs, stderr)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []instance{}
		}
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tADDR\tVERSION\tZONE\tWEIGHT\tTTL LEFT")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Service, r.Addr, dash(r.Version), dash(r.Zone), r.Weight, r.TTLLeft)
	}
	return tw.Flush()
}

// lsKey checks the prefix and the optional SERVICE argument of fs and
// returns the key prefix to list.
func lsKey(fs *flag.FlagSet, prefix string) (string, error) {
	if fs.NArg() > 1 {
		return "", &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(1))}
	}
	if err := naming.ValidatePrefix(prefix); err != nil {
		return "", fmt.Errorf("--prefix: %w", err)
	}
	if fs.NArg() == 0 {
		return prefix, nil
	}
	if err := naming.ValidateService(fs.Arg(0)); err != nil {
		return "", err
	}
	return prefix + fs.Arg(0) + "/", nil
}

// lsRows decodes the records in kvs into rows sorted by service and
// address, with the time left on each lease; a key that is not a record is
// reported on stderr and skipped.
func lsRows(ctx context.Context, cli *clientv3.Client, prefix string, kvs []*mvccpb.KeyValue, stderr io.Writer) []instance {
	ttls := map[int64]time.Duration{}
	var rows []instance
	for _, kv := range kvs {
		svc, err := naming.ServiceOfKey(prefix, string(kv.Key))
		if err != nil {
			fmt.Fprintf(stderr, "svckit: skip %s: %v\n", kv.Key, err)
			continue
		}
		rec, err := naming.DecodeRecord(kv.Value)
		if err != nil {
			fmt.Fprintf(stderr, "svckit: skip %s: %v\n", kv.Key, err)
			continue
		}
		left, seen := ttls[kv.Lease]
		if !seen && kv.Lease != 0 {
			if t, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				left = time.Duration(t.TTL) * time.Second
			}
			ttls[kv.Lease] = left
		}
		w := rec.Metadata.Weight
		if w == 0 {
			w = 1
		}
		rows = append(rows, instance{Service: svc, Addr: rec.Addr, Version: rec.Metadata.Version, Zone: rec.Metadata.Zone,
			Weight: w, TTLLeft: left, Instance: rec.Metadata.InstanceID})
	}
	slices.SortFunc(rows, func(a, b instance) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.Addr, b.Addr)
	})
	return rows
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
