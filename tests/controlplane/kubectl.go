package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

// runKubectl is `controlplane kubectl ARGS...`: kubectl itself (k8s.io/kubectl, the same
// version as the API server), so tests and docs can show what an operator of the fleet sees
// without a kubectl on the machine. docs/DEPLOY.md's example outputs are captured with it
// (operator/tests/deploy_docs.rs).
func runKubectl(args []string) int {
	os.Args = append([]string{"kubectl"}, args...)
	return cli.Run(cmd.NewDefaultKubectlCommand())
}
