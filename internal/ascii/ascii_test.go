package ascii

import "testing"

func TestFold(t *testing.T) {
	for _, c := range []struct {
		a, b         string
		equal, prefx bool
	}{
		{"Content-Length", "content-length", true, true},
		{"/PANOPTO/api/", "/Panopto/API/", true, true},
		{"/Panopto/api/v1", "/panopto/API/", false, true},
		{"K", "k", true, true},
		{"\u212a", "k", false, false}, // KELVIN SIGN
		{"\u017f", "s", false, false}, // LONG S
		{"chunked", "chunke", false, true},
		{"", "", true, true},
		{"a", "", false, true},
		{"[", "{", false, false}, // only letters fold
	} {
		if got := EqualFold(c.a, c.b); got != c.equal {
			t.Errorf("EqualFold(%q, %q) = %v", c.a, c.b, got)
		}
		if got := EqualFold([]byte(c.a), c.b); got != c.equal {
			t.Errorf("EqualFold([]byte(%q), %q) = %v", c.a, c.b, got)
		}
		if got := HasPrefixFold(c.a, c.b); got != c.prefx {
			t.Errorf("HasPrefixFold(%q, %q) = %v", c.a, c.b, got)
		}
	}
	if !ContainsFold("/Panopto/PUBLICAPI/REST/sessionUpload", "/PublicAPI/REST/") || ContainsFold("/x/ſessionUpload", "/sessionUpload") {
		t.Error("ContainsFold")
	}
	if got := ToLower("Deakin\\ALICE-\u212a"); got != "deakin\\alice-\u212a" {
		t.Errorf("ToLower = %q", got)
	}
	if s := "already lower"; ToLower(s) != s {
		t.Error("ToLower changed a lower-case string")
	}
}
