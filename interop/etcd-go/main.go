// etcd-go is the Go side of Volley's etcd discovery interop test: it registers an endpoint
// with etcd's own Go naming package (endpoints.Manager), or resolves `etcd:///<name>` with
// etcd's own gRPC resolver and calls helloworld.Greeter/SayHello on what it finds.
//
// Built from Debian's Go packages (golang-etcd-server-dev, golang-google-grpc-dev) in GOPATH
// mode; see run.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/endpoints"
	"go.etcd.io/etcd/clientv3/naming/resolver"
	"google.golang.org/grpc"
)

// rawCodec sends and receives message bytes as they are, so that no generated helloworld
// package is needed: requests and replies are encoded by hand below.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// helloRequest encodes HelloRequest{name} (field 1, a short string).
func helloRequest(name string) []byte {
	return append([]byte{0x0a, byte(len(name))}, name...)
}

// helloReply decodes HelloReply{message} (field 1, a short string).
func helloReply(b []byte) string {
	if len(b) < 2 || b[0] != 0x0a || int(b[1]) != len(b)-2 {
		return fmt.Sprintf("undecodable reply %x", b)
	}
	return string(b[2:])
}

func main() {
	mode := flag.String("mode", "", "register or call")
	eps := flag.String("endpoints", "", "etcd endpoints, comma-separated")
	name := flag.String("name", "kvdb", "service name")
	addr := flag.String("addr", "", "register: the address to register")
	ttl := flag.Int64("ttl", 10, "register: lease TTL in seconds")
	calls := flag.Int("calls", 30, "call: how many calls")
	flag.Parse()

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*eps, ","),
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	switch *mode {
	case "register":
		em, err := endpoints.NewManager(cli, *name)
		must(err)
		lease, err := cli.Grant(ctx, *ttl)
		must(err)
		key := *name + "/" + *addr
		must(em.AddEndpoint(ctx, key, endpoints.Endpoint{Addr: *addr}, clientv3.WithLease(lease.ID)))
		alive, err := cli.KeepAlive(context.Background(), lease.ID)
		must(err)
		fmt.Println("registered", key)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		for {
			select {
			case <-alive:
			case <-stop:
				must(em.DeleteEndpoint(context.Background(), key))
				return
			}
		}
	case "call":
		builder, err := resolver.NewBuilder(cli)
		must(err)
		conn, err := grpc.DialContext(ctx, "etcd:///"+*name,
			grpc.WithResolvers(builder),
			grpc.WithInsecure(),
			grpc.WithDefaultServiceConfig(`{"loadBalancingPolicy":"round_robin"}`),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.WaitForReady(true)))
		must(err)
		defer conn.Close()
		for i := 0; i < *calls; i++ {
			req := helloRequest("go")
			var reply []byte
			must(conn.Invoke(ctx, "/helloworld.Greeter/SayHello", &req, &reply))
			fmt.Println(helloReply(reply))
		}
	default:
		fmt.Fprintln(os.Stderr, "-mode register or -mode call")
		os.Exit(2)
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
