package etcdtest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/svckit/svckit/framework/etcdtest"
)

// A real etcd member in-process: a key survives a stop and restart on the
// same ports with the same data, and is gone after a wipe. Tests use Start,
// which closes the cluster at the end of the test.
func Example() {
	etcd, err := etcdtest.New(etcdtest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	get := func() {
		resp, err := cli.Get(ctx, "greeting")
		if err != nil {
			log.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			fmt.Printf("%s=%s\n", kv.Key, kv.Value)
		}
		fmt.Println("keys:", resp.Count)
	}

	if _, err := cli.Put(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err)
	}
	etcd.Stop(0)
	if err := etcd.Restart(0); err != nil {
		log.Fatal(err)
	}
	get()
	if err := etcd.Wipe(); err != nil {
		log.Fatal(err)
	}
	get()
	// Output:
	// greeting=hello
	// keys: 1
	// keys: 0
}
