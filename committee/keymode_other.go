//go:build !unix

package committee

import "io/fs"

func keyModeFix(path string, _ fs.FileInfo) string { return keyModeAdvice(path, -1, -1, false) }
