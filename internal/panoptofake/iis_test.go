package panoptofake

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Paths match as on Panopto's IIS: the fixed segments in any casing.
func TestPathsMatchCaseInsensitively(t *testing.T) {
	e := newEnv(t, nil)
	tr := e.login()
	tok := tr.str("access_token")

	for _, p := range []string{
		"/Panopto/api/v1/folders",
		"/panopto/api/v1/folders",
		"/PANOPTO/API/V1/FOLDERS",
		"/panopto/Api/v1/Folders/" + FolderOnTrack + "/CHILDREN",
		"/panopto/api/v1/folders/" + strings.ToUpper(FolderOnTrack) + "/Sessions",
	} {
		if st, _ := e.list(p, tok); st != http.StatusOK {
			t.Errorf("GET %s: %d", p, st)
		}
	}
	// A fixed segment beats a wildcard in any casing, as in IIS's routing.
	if st, names := e.list("/panopto/api/v1/folders/SEARCH?searchQuery=ontrack", tok); st != http.StatusOK || len(names) == 0 {
		t.Errorf("search in upper case: %d %q", st, names)
	}
	// Still a bearer, still Panopto's 404 for what does not exist.
	if st, _ := e.do(http.MethodGet, "/panopto/API/v1/folders", "", nil); st != http.StatusUnauthorized {
		t.Errorf("no bearer: %d", st)
	}
	if st, b := e.do(http.MethodGet, "/panopto/api/v1/nothing", tok, nil); st != http.StatusNotFound || !strings.Contains(string(b), "No HTTP resource") {
		t.Errorf("unknown API path: %d %s", st, b)
	}

	// sessionUpload, spelled as clients in the wild do.
	st, b := e.do(http.MethodPost, "/panopto/publicapi/Rest/sessionupload", tok, strings.NewReader(`{"FolderId":"`+FolderOnTrack+`"}`))
	if st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, b)
	}
	u := e.createUpload(tok)
	id := u["ID"].(string)
	if st, b := e.do(http.MethodGet, "/Panopto/PublicAPI/Rest/sessionUpload/"+id, tok, nil); st != http.StatusOK || !strings.Contains(string(b), id) {
		t.Errorf("get with PublicAPI/Rest: %d %s", st, b)
	}

	// The token endpoint too.
	if r := e.post("/panopto/OAuth2/Connect/Token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.str("refresh_token")}}, false); r.status != http.StatusOK {
		t.Errorf("token endpoint in odd casing: %d %s", r.status, r.raw)
	}
}

// On the upload target only the fixed part is respelled: the S3 key keeps
// its case, and a signature version 2 is checked against the path as sent.
func TestUploadTargetCasing(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.S3SecretKey = "dummy" })
	tok := e.login().str("access_token")
	u := e.createUpload(tok)
	id := u["ID"].(string)
	target := strings.Replace(u["UploadTarget"].(string), "/Panopto/Upload/", "/panopto/UPLOAD/", 1)

	for _, key := range []string{"Lecture.MP4", "upload", "UPLOAD"} {
		req, _ := http.NewRequest(http.MethodPut, target+"/"+key, strings.NewReader("media"))
		sigV2(req, "dummy", "dummy")
		resp, err := e.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("signed PUT %s: %d", key, resp.StatusCode)
		}
	}
	info, _ := e.s.Upload(id)
	for _, key := range []string{"Lecture.MP4", "upload", "UPLOAD"} {
		if _, ok := info.Objects[key]; !ok {
			t.Errorf("object %q not stored as sent; objects %v", key, info.Objects)
		}
	}
	if st := e.s.Stats(); st.UploadBadSignature != 0 {
		t.Errorf("%d signatures did not verify", st.UploadBadSignature)
	}
}
