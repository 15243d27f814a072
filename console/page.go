package console

import (
	"embed"
	"net/http"

	"github.com/prereg/prereg/httpapi"
)

//go:embed page/index.html page/console.js page/console.css
var files embed.FS

// asset is one embedded file and the type it is served as.
type asset struct {
	name, contentType string
}

var assets = map[string]asset{
	"console.js":  {"page/console.js", "text/javascript; charset=utf-8"},
	"console.css": {"page/console.css", "text/css; charset=utf-8"},
}

// pagePolicy is the console's Content-Security-Policy: prereg's strict
// one (httpapi.HTMLPolicy), with no inline style or script at all; the
// page's style and script are the files under /admin/assets/.
var pagePolicy = httpapi.HTMLPolicy()

// ServePage answers GET /admin/: the console's page. It holds no data
// and needs no token; the script signs in and reads through the admin
// API.
func ServePage(w http.ResponseWriter, _ *http.Request) {
	b, err := files.ReadFile("page/index.html")
	if err != nil {
		http.Error(w, "console unavailable", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	httpapi.SetHTMLHeaders(h, pagePolicy)
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// ServeAsset answers GET /admin/assets/{file}: the console's script and
// style sheet.
func ServeAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.PathValue("file")]
	if !ok {
		httpapi.WriteError(w, httpapi.CodeNotFound, nil)
		return
	}
	b, err := files.ReadFile(a.name)
	if err != nil {
		httpapi.WriteError(w, httpapi.CodeNotFound, nil)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}
