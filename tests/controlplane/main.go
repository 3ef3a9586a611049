// Command controlplane runs a real Kubernetes control plane for BotFleet's end-to-end tests:
// kube-apiserver (with an embedded etcd) and kube-controller-manager, built from the official
// k8s.io/kubernetes module. Each runs in its own process, because kube-apiserver's command
// installs process-global signal handling, flags and metrics:
//
//	controlplane pki DIR                        # CA, serving/client certs, SA keys (idempotent)
//	controlplane apiserver DIR [--port N]        # etcd + kube-apiserver; writes DIR/*.kubeconfig
//	controlplane controller-manager DIR [--port N]
//	controlplane kubectl ARGS...                 # kubectl of the same Kubernetes version
//	controlplane client-cert DIR NAME CN [ORG...] # another client identity: DIR/NAME.{crt,key,kubeconfig}
//
// Extra flags after `--` are passed through to the Kubernetes command. Each process prints one
// line `READY <url>` on stdout once its /readyz (apiserver) or /healthz (controller manager)
// answers ok, and exits when the process that started it goes away (see watchParent).
// docs/CONTROLPLANE.md has the details.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  controlplane pki DIR
  controlplane apiserver DIR [--port N] [-- kube-apiserver flags...]
  controlplane controller-manager DIR [--port N] [-- kube-controller-manager flags...]
  controlplane kubectl [kubectl arguments...]
  controlplane client-cert DIR NAME CN [ORG...]
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "kubectl" {
		os.Exit(runKubectl(os.Args[2:]))
	}
	if len(os.Args) >= 2 && os.Args[1] == "client-cert" {
		os.Exit(runClientCert(os.Args[2:]))
	}
	if len(os.Args) < 3 {
		usage()
	}
	sub, dir := os.Args[1], os.Args[2]
	fs := flag.NewFlagSet(sub, flag.ExitOnError)
	port := fs.Int("port", 0, "secure port on 127.0.0.1 (0: pick a free one)")
	keepParent := fs.Bool("no-parent-watch", false, "keep running when the parent process exits")
	rest := os.Args[3:]
	var extra []string
	for i, a := range rest {
		if a == "--" {
			rest, extra = rest[:i], rest[i+1:]
			break
		}
	}
	_ = fs.Parse(rest)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fatal(err)
	}
	dir, _ = filepath.Abs(dir)

	switch sub {
	case "pki":
		if err := ensurePKI(dir); err != nil {
			fatal(err)
		}
		return
	case "apiserver", "controller-manager":
	default:
		usage()
	}
	if !*keepParent {
		watchParent()
	}
	if err := ensurePKI(dir); err != nil {
		fatal(err)
	}
	p := *port
	if p == 0 {
		p = freePort()
	}
	switch sub {
	case "apiserver":
		os.Exit(runAPIServer(dir, p, extra))
	case "controller-manager":
		os.Exit(runControllerManager(dir, p, extra))
	}
}

// watchParent makes this process exit when the process that started it exits: it polls
// getppid() every 250 ms, and once we have been re-parented (to init or a subreaper) the parent
// is gone and we exit with status 3. Everything the process owns goes with it (the embedded
// etcd runs inside the apiserver process); the data directory belongs to the harness.
//
// PR_SET_PDEATHSIG is deliberately not used: the kernel sends that signal when the *thread*
// that forked us exits, and a Rust test binary starts its one shared control plane from
// whichever test thread gets there first, a thread that ends long before the binary does.
func watchParent() {
	parent := os.Getppid()
	if parent == 1 {
		return // started by init or detached on purpose: nothing to watch
	}
	go func() {
		for {
			if os.Getppid() != parent {
				fmt.Fprintf(os.Stderr, "controlplane: parent process %d exited, exiting\n", parent)
				os.Exit(3)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// announceWhenReady polls url (with the admin client certificate, trusting the CA when caFile
// is set, or skipping verification for the controller manager's self-signed serving cert) and
// prints `READY base` on stdout once it answers 200.
func announceWhenReady(ctx context.Context, dir, base, path string, verify bool) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if verify {
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if err != nil {
			fatal(err)
		}
		pool.AppendCertsFromPEM(ca)
		cfg.RootCAs = pool
	} else {
		cfg.InsecureSkipVerify = true
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	start := time.Now()
	for ctx.Err() == nil {
		resp, err := client.Get(base + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintf(os.Stderr, "controlplane: %s%s ok after %s\n", base, path, time.Since(start).Round(time.Millisecond))
				fmt.Printf("READY %s\n", base)
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func baseURL(port int) string { return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "controlplane: %v\n", err)
	os.Exit(1)
}
