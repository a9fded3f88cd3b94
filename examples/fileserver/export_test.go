package fileserver

// SetAfterRename makes s call f in Upload just after the rename of the
// upload of p, before it caches the file's checksum.
func SetAfterRename(s *DirService, f func(p string)) { s.afterRename = f }
