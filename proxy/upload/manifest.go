package upload

import (
	"bytes"
	"encoding/xml"
	"time"
)

// manifestName is the object the generated manifest is stored as, the name
// Panopto's upload sample uses.
const manifestName = "upload_manifest_generated.xml"

// manifest returns Panopto's Universal Capture manifest for one primary
// video: Title, Description, Date and File, each XML-escaped.
func manifest(title, description, file string, date time.Time) []byte {
	var b bytes.Buffer
	esc := func(s string) { _ = xml.EscapeText(&b, []byte(s)) }
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>
<Session xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns="http://tempuri.org/UniversalCaptureSpecification/v1">
  <Title>`)
	esc(title)
	b.WriteString("</Title>\n  <Description>")
	esc(description)
	b.WriteString("</Description>\n  <Date>")
	esc(date.UTC().Format("2006-01-02T15:04:05.000-07:00"))
	b.WriteString("</Date>\n  <Videos>\n    <Video>\n      <Start>PT0S</Start>\n      <File>")
	esc(file)
	b.WriteString("</File>\n      <Type>Primary</Type>\n    </Video>\n  </Videos>\n</Session>\n")
	return b.Bytes()
}
