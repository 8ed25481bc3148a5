# Nomad 0.8 (HCL1): one rkt task using every option of the driver.
job "inventory" {
  datacenters = ["dc1"]
  type        = "service"

  group "api" {
    restart {
      attempts = 3
      interval = "5m"
      delay    = "25s"
      mode     = "delay"
    }

    task "server" {
      driver       = "rkt"
      user         = "nobody"
      kill_timeout = "45s"

      config {
        image              = "example.com/inventory:2.1"
        command            = "/bin/inventory"
        args               = ["--listen", ":${NOMAD_PORT_http}", "--data", "${NOMAD_TASK_DIR}/db", "--price=$5"]
        trust_prefix       = "example.com/inventory"
        insecure_options   = ["image", "tls"]
        dns_servers        = ["10.0.0.53", "10.0.1.53"]
        dns_search_domains = ["svc.example.com", "example.com"]
        net                = ["default", "backend"]
        port_map {
          http    = "http"
          metrics = "metrics-tcp"
        }
        volumes    = ["/srv/inventory:/data", "/etc/inventory:/etc/inventory:readOnly"]
        no_overlay = true
        debug      = "true"
        group      = "inventory"
      }

      env {
        LOG_LEVEL = "info"
        DATA_DIR  = "${NOMAD_TASK_DIR}/db"
      }

      resources {
        cpu    = 750
        memory = 512
        network {
          mbits = 10
          port "http" {
            static = 18080
          }
          port "metrics" {
            static = 19090
          }
        }
      }

      logs {
        max_files     = 5
        max_file_size = 20
      }

      meta {
        team = "stock"
      }
    }
  }
}
