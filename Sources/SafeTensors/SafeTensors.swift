// safetensors reader/writer: see SafeTensorsFile.swift
