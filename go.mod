module github.com/doubtfire-lms/panopto-sidecar

go 1.26.8
