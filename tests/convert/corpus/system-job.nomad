# A system job: one instance on every node (here: every --node given).
job "node-exporter" {
  type = "system"
  group "exporter" {
    task "exporter" {
      driver = "rkt"
      config {
        image   = "example.com/node-exporter:1.8"
        net     = ["host"]
        volumes = ["/proc:/host/proc:readOnly", "/sys:/host/sys:ro"]
      }
      resources {
        cpu    = 100
        memory = 50
      }
    }
  }
}
