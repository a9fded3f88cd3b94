package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svckit/svckit/framework"
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

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := framework.DefaultConfig()
	if err := cfg.ApplyEnv(nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("svckit ls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	etcd := fs.String("etcd", strings.Join(cfg.Etcd, ","), "comma-separated etcd endpoints (env SVCKIT_ETCD_ENDPOINTS)")
	prefix := fs.String("prefix", cfg.Prefix, "etcd key prefix (env SVCKIT_PREFIX)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("usage: svckit ls [--etcd ADDRS] [--prefix P] [--json] [SERVICE]")
	}
	if err := naming.ValidatePrefix(*prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	key := *prefix
	if fs.NArg() == 1 {
		if err := naming.ValidateService(fs.Arg(0)); err != nil {
			return err
		}
		key += fs.Arg(0) + "/"
	}
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: strings.Split(*etcd, ","), DialTimeout: 3 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("etcd %s: %w", *etcd, err)
	}
	ttls := map[int64]time.Duration{}
	var rows []instance
	for _, kv := range resp.Kvs {
		svc, err := naming.ServiceOfKey(*prefix, string(kv.Key))
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

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
