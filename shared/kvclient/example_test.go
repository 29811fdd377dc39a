package kvclient_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// Example writes, reads and scans keys of a three-node cluster started
// with `pleiades dev --nodes 3` (certificates under data/dev/node1/certs).
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := kvclient.New(ctx, kvclient.Config{
		Addrs:    []string{"127.0.0.1:7402", "127.0.0.1:7412", "127.0.0.1:7422"},
		CertsDir: "data/dev/node1/certs",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())

	if _, err := c.Put(ctx, []byte("greeting"), []byte("hello")); err != nil {
		log.Fatal(err)
	}
	v, found, err := c.Get(ctx, []byte("greeting"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(found, string(v.Value), v.Timestamp)

	res, err := c.CompareAndSwap(ctx, kvclient.CAS{Key: []byte("greeting"), Expected: []byte("hello"), NewValue: []byte("hi")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("swapped:", res.Succeeded)

	it := c.Scan(ctx, []byte("a"), []byte("z"), kvclient.ScanOptions{Limit: 10})
	for it.Next() {
		kv := it.KV()
		fmt.Printf("%s = %s (%v)\n", kv.Key, kv.Value, kv.Timestamp)
	}
	if err := it.Err(); err != nil {
		log.Fatal(err)
	}
}
