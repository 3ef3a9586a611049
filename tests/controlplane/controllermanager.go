package main

import (
	"context"
	"path/filepath"
	"strconv"

	"k8s.io/component-base/cli"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// runControllerManager runs the kube-controller-manager command in this process against the
// API server whose kubeconfigs DIR holds (start `controlplane apiserver DIR` first).
func runControllerManager(dir string, port int, extra []string) int {
	p := func(name string) string { return filepath.Join(dir, name) }
	kubeconfig := p("controller-manager.kubeconfig")
	if !exists(kubeconfig) {
		fatal(errNoKubeconfig(kubeconfig))
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + p("controller-manager-certs"),
		"--leader-elect=false",
		"--controllers=*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p("sa.key"),
		"--root-ca-file=" + p("ca.crt"),
		"--cluster-signing-cert-file=" + p("ca.crt"),
		"--cluster-signing-key-file=" + p("ca.key"),
		"--flex-volume-plugin-dir=" + p("flexvolume"), // the default is under /usr/libexec
		"--profiling=false",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
	}
	cmd := kcmapp.NewControllerManagerCommand()
	cmd.SetArgs(append(args, extra...))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go announceWhenReady(ctx, dir, baseURL(port), "/healthz", false)
	return cli.Run(cmd)
}

type errNoKubeconfig string

func (e errNoKubeconfig) Error() string {
	return string(e) + " does not exist: start `controlplane apiserver` on this directory first"
}
