package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as cmd/kube-apiserver does
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as cmd/kube-apiserver does
	_ "k8s.io/component-base/metrics/prometheus/version"  // as cmd/kube-apiserver does
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "time/tzdata"
)

const (
	serviceCIDR = "10.0.0.0/24" // API data only: nothing on this machine routes to it
	serviceIP   = "10.0.0.1"    // the `kubernetes` Service's ClusterIP, in the serving cert
	saIssuer    = "https://kubernetes.default.svc.cluster.local"
)

// runAPIServer starts an embedded etcd (data in DIR/etcd, client and peer on free 127.0.0.1
// ports, plain HTTP, no fsync: test data only), writes the kubeconfigs for port, then runs the
// kube-apiserver command in this process until it exits.
func runAPIServer(dir string, port int, extra []string) int {
	etcd, etcdURL, err := startEtcd(filepath.Join(dir, "etcd"))
	if err != nil {
		fatal(fmt.Errorf("embedded etcd: %w", err))
	}
	defer etcd.Close()
	go func() {
		if err := <-etcd.Err(); err != nil {
			fatal(fmt.Errorf("embedded etcd: %w", err))
		}
	}()

	base := baseURL(port)
	if err := writeKubeconfigs(dir, base); err != nil {
		fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p("apiserver.crt"),
		"--tls-private-key-file=" + p("apiserver.key"),
		"--client-ca-file=" + p("ca.crt"),
		"--anonymous-auth=false",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + p("sa.pub"),
		"--service-account-signing-key-file=" + p("sa.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--endpoint-reconciler-type=none",
		"--requestheader-client-ca-file=" + p("front-proxy-ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p("front-proxy-client.crt"),
		"--proxy-client-key-file=" + p("front-proxy-client.key"),
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir=" + p("apiserver-certs"),
	}
	cmd := apiserverapp.NewAPIServerCommand()
	cmd.SetArgs(append(args, extra...))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go announceWhenReady(ctx, dir, base, "/readyz", true)
	return cli.Run(cmd)
}

func startEtcd(dataDir string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "botfleet-test"
	cfg.Dir = dataDir
	cfg.UnsafeNoFsync = true // a test store we never keep
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	clientURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort())}
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort())}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// The etcd metrics/health listener is not needed.
	cfg.ListenMetricsUrls = nil
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", err
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return nil, "", fmt.Errorf("not ready after 60s")
	}
	return e, clientURL.String(), nil
}
