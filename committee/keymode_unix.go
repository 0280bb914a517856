//go:build unix

package committee

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// keyModeFix inspects where the key file is: whether its file system is
// read-only and who owns it.
func keyModeFix(path string, st fs.FileInfo) string {
	owner := -1
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		owner = int(s.Uid)
	}
	readOnly := errors.Is(unix.Access(path, unix.W_OK), unix.EROFS)
	return keyModeAdvice(path, owner, os.Geteuid(), readOnly)
}
