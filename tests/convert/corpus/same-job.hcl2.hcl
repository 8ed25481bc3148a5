# The same job three times: HCL2 here.
job "kv" {
  group "store" {
    count = 2
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "kv" {
      driver       = "rkt"
      user         = "kv"
      kill_timeout = "12s"
      config {
        image = "example.com/kv-server:1.0"
        args  = ["--name", "${NOMAD_ALLOC_NAME}"]
        port_map {
          client = "client"
        }
        dns_servers = ["none"]
      }
      env {
        KV_MODE = "replica"
      }
      resources {
        cpu    = 250
        memory = 64
        network {
          port "client" {
            static = 12379
          }
        }
      }
      logs {
        max_files     = 3
        max_file_size = 5
      }
    }
  }
}
