package proc

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the child when the process that
// started it dies, so that a test binary killed by its -timeout leaves no
// server running.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
