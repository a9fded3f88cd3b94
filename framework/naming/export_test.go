package naming

// WithListPage sets the most keys one list request reads (listPage by
// default).
func WithListPage(n int) ResolverOption {
	return func(o *resolverOptions) { o.page = n }
}

// WithAfterPage sets a function called in the watch's goroutine after each
// list page is read, with the number of keys asked for, before the next.
func WithAfterPage(f func(n int)) ResolverOption {
	return func(o *resolverOptions) { o.afterPage = f }
}

// ParseTarget is parseTarget, for the external tests.
var ParseTarget = parseTarget

// WithBeforeWatch sets a function the registrar calls before each watch of
// its key.
func WithBeforeWatch(f func()) RegistrarOption {
	return func(o *registrarOptions) { o.beforeWatch = f }
}
